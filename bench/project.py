"""A benchmark's private project: the pipeline's steps run as their commands on its own params.yaml."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

BIN = Path(sys.executable).parent


def write_params(root: Path, raw: dict[str, Any], quick: bool) -> Path:
    """``raw`` as ``root/params.yaml``; ``quick``: small models and two epochs (a smoke run)."""
    if quick:
        raw["train"].update({"max_epochs": 2, "mlp": [32], "d": 16})
        raw["lightgbm"]["rounds"] = 50
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_steps(params: Path, steps: Iterable[str]) -> dict[str, float]:
    """Each pipeline step as its command, as `dvc repro` runs them; seconds per step."""
    seconds = {}
    for step in steps:
        start = time.perf_counter()
        print(f"  shoprank {step} ...", flush=True)
        done = subprocess.run(
            [str(BIN / "shoprank"), step, "--params", str(params)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"shoprank {step} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        seconds[step] = round(time.perf_counter() - start, 1)
    return seconds
