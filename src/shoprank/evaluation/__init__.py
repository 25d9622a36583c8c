"""Ranking and CTR metrics, and the evaluation step."""
