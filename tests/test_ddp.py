"""Lightning DDP on CPU: BERT-CTR trained across two processes (gloo) matches one process.

The ranks are real processes: tests/ddp_train.py runs in a subprocess because the
``ddp`` strategy starts rank 1 by re-running the script's command line. The same
``train.strategy`` / ``devices`` / ``num_nodes`` settings drive multi-GPU and
multi-node runs (docs/scaling.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("ddp_train.py")
ROOT = SCRIPT.parents[1]


def _train(out: Path, devices: int, strategy: str) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, str(SCRIPT), "--devices", str(devices), "--strategy", strategy, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    return {
        "single": _train(tmp / "single.json", 1, "auto"),
        "ddp": _train(tmp / "ddp.json", 2, "ddp"),
    }


def test_ddp_runs_two_processes_and_writes_one_artifact(runs):
    ddp = runs["ddp"]
    assert ddp["world_size"] == 2
    assert runs["single"]["world_size"] == 1
    # rank 1 trained too but left the artifact to rank 0: exactly one model and its checksum
    assert ddp["artifacts"] == ["bert_ctr.pt", "bert_ctr.pt.sha256"]
    assert ddp["epochs"] == runs["single"]["epochs"]


def test_both_learn_the_click_model(runs):
    for run in runs.values():
        assert run["auc"] > 0.5 + 0.75 * (run["oracle_auc"] - 0.5), run  # chance is 0.5
        assert run["log_loss"] < run["base_rate_log_loss"] - 0.04, run


def test_ddp_quality_matches_single_process(runs):
    single, ddp = runs["single"], runs["ddp"]
    assert ddp["auc"] == pytest.approx(single["auc"], abs=0.015)
    assert ddp["log_loss"] == pytest.approx(single["log_loss"], abs=0.01)
