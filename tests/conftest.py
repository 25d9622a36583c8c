"""Shared fixtures: the real params.yaml, shrunk to the tiny profile for speed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoprank.config import Params, load_params

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SHOPRANK_NO_PROGRESS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def params() -> Params:
    """The project's own params.yaml (tests shrink it; they never keep a second copy)."""
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def tiny_sim(params):
    """One tiny simulated marketplace shared by the whole session (read-only)."""
    from shoprank.data.simulator import simulate

    return simulate(params.simulate, "tiny")


@pytest.fixture(scope="session")
def tiny_batch(tiny_sim, tmp_path_factory) -> Path:
    """The tiny marketplace written as a batch folder (contract tables + truth/)."""
    from shoprank.data.simulator import write_simulation

    out = tmp_path_factory.mktemp("tiny_batch")
    write_simulation(tiny_sim, out)
    return out
