"""Shared fixtures: the real params.yaml, shrunk to the tiny profile for speed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

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


def tiny_raw_params(root: Path | None = None) -> dict:
    """params.yaml as a dict on the tiny profile with small models (for a test's own params file).

    With ``root``, every path, the embedding cache and a private copy of the Feast repo go
    under it, so the run leaves the project's data and feature store alone.
    """
    from shoprank.features.store import copy_repo

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["simulate"]["profile"] = "tiny"
    raw["train"].update({"max_epochs": 2, "batch_size": 512, "mlp": [32], "d": 16})
    raw["lightgbm"]["rounds"] = 50
    if root is not None:
        raw["paths"] = {k: str(root / v) for k, v in raw["paths"].items()}
        raw["text"]["cache_dir"] = str(root / "cache")
        # the Feast repo reads its tables from ../data/features: a copy beside root/data
        raw["features"]["repo"] = str(copy_repo(ROOT / "features", root))
    return raw
