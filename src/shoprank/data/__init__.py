"""Data contract, marketplace simulator and importers."""
