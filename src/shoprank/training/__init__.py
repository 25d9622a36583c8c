"""Training candidates on the point-in-time training set."""
