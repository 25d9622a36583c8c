"""Peak memory and wall time of `shoprank train`, streamed in chunks against the split held at once.

Runs the real step (`shoprank train --candidate X`) in a child process on the current
training set (data/training, the profile it was built from) twice per candidate: with
``train.chunk_rows`` at least the training split (one chunk: the whole split in memory,
as training read it before it streamed) and at ``--chunk`` rows, one run at a time.
Peak memory is the child's peak resident set (``wait4``'s ``ru_maxrss``). Models and
metrics go to a temporary folder; ``--epochs`` (default 1) keeps the neural runs short,
since the peak is reached in the first epoch. Run: `python -m bench.bench_train_memory [--chunk N]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.hardware import describe
from bench.results import printed, row

WHOLE = 10**12  # chunk_rows no split reaches: one chunk


def start(candidate: str, chunk_rows: int, epochs: int, out: Path) -> tuple[subprocess.Popen, float]:
    """One `shoprank train --candidate` in a child process, and when it started."""
    env = {
        **os.environ,
        "SHOPRANK__PATHS__MODELS": str(out / "models"),
        "SHOPRANK__PATHS__METRICS": str(out / "metrics"),
        "SHOPRANK__TRAIN__MAX_EPOCHS": str(epochs),
        "SHOPRANK__TRAIN__CHUNK_ROWS": str(chunk_rows),
    }
    cli = Path(sys.executable).with_name("shoprank")
    log = (out.parent / f"{out.name}.log").open("w")
    proc = subprocess.Popen([str(cli), "train", "--candidate", candidate], env=env, stdout=log, stderr=log)
    return proc, time.perf_counter()


def finish(proc: subprocess.Popen, started: float, log: Path, candidate: str) -> dict:
    """Wall seconds and peak RSS (GiB) of a child started by :func:`start`, once it exits."""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"shoprank train --candidate {candidate} failed: {log.read_text()[-2000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}


def run(candidates: list[str], chunk: int, epochs: int) -> dict:
    from shoprank.config import load_params
    from shoprank.training.data import SPLIT_COLUMNS, time_split
    from shoprank.training.train import training_set_path

    params = load_params()
    path = training_set_path(params)
    if not path.exists():
        return {"skipped": f"{path} missing: build the training set first (dvc repro training-set)"}
    import pyarrow.parquet as pq

    keys = pq.read_table(path, columns=list(SPLIT_COLUMNS)).to_pandas()
    split = time_split(keys, params.train.val_share, params.train.test_share)
    out: dict = {"hardware": describe(), "training_rows": len(split["train"]), "chunk_rows": chunk}
    out["epochs"], out["profile"] = epochs, params.simulate.profile
    with tempfile.TemporaryDirectory() as tmp:
        for name in candidates:  # one run at a time: each peak is its own, not the sum of two
            for label, chunk_rows in (("whole", WHOLE), ("streamed", chunk)):
                run_dir = Path(tmp) / f"{name}_{label}"
                proc, t0 = start(name, chunk_rows, epochs, run_dir)
                got = out[f"{name}_{label}"] = finish(proc, t0, run_dir.with_suffix(".log"), name)
                print(f"{name:9s} {label:8s} {got['seconds']:8.1f} s  peak {got['peak_rss_gib']:.2f} GiB")
    return out


def rows(out: dict, candidates: list[str]) -> list[dict]:
    chunk = f"{out['chunk_rows']:,}-row chunks"
    result = []
    for name in candidates:
        whole, streamed = out[f"{name}_whole"], out[f"{name}_streamed"]
        result += [
            row(
                f"{name} peak RSS, {chunk}",
                streamed["peak_rss_gib"],
                "GiB",
                "the split at once",
                whole["peak_rss_gib"],
            ),
            row(
                f"{name} wall time, {chunk}", streamed["seconds"], "s", "the split at once", whole["seconds"]
            ),
        ]
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chunk", type=int, default=100_000, help="train.chunk_rows of the streamed runs")
    ap.add_argument("--epochs", type=int, default=1, help="train.max_epochs of the neural runs")
    ap.add_argument("--candidates", default="lightgbm,bert_ctr")
    args = ap.parse_args(argv)
    candidates = [c for c in args.candidates.split(",") if c]
    out = run(candidates, args.chunk, args.epochs)
    if "skipped" in out:
        print(out["skipped"])
        return out
    split = f"{out['training_rows']:,} training rows"
    print(f"`shoprank train` on {out['hardware']}: {out['profile']} profile, {split}")
    return printed(rows(out, candidates), out)


if __name__ == "__main__":
    main()
