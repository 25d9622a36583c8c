"""Monitoring of the pipeline's data: drift of inputs, scores and outcomes between the splits."""
