"""Online experiments: arms, traffic split and interleaving as the service runs them, and
the report that reads them back from the feedback log (see docs/experiments.md)."""
