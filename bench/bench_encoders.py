"""The ranking candidates on the stock encoder against the encoder adapted to the shop.

``text.encoder`` picks what ``features`` embeds queries and items with, so it changes
every text input downstream. This benchmark compares two whole pipeline runs of the same
data: the project's own (``metrics/evaluate.json``, which must be the stock encoder's) and
the same ``dvc repro`` with ``text.encoder: adapted``, run in a separate git worktree of
HEAD so the project's outputs stay as they are (shared DVC cache: only the stages from
``features`` on run again; on 2 cores that is about an hour for the default profile).
The worktree is kept (``--workspace``, by default ``<project>-encoders`` beside the
project): a later run re-runs ``dvc repro`` there, which resumes an interrupted run and
does nothing when it finished. Remove the worktree (``git worktree remove``) to compare
again on newer code.

Printed per candidate: AUC, AUC over the Bayes-optimal AUC, oracle uplift share, and the
AUCs on unseen queries and new items, adapted against stock (the baseline, same data).

    python -m bench.bench_encoders
    python -m bench.bench_encoders --workspace ../elsewhere
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from bench.hardware import describe
from bench.results import row

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ("bert_ctr", "lightgbm", "no_text")
MEASURES = ("oracle_uplift_share", "auc", "auc_over_oracle", "auc_unseen_queries", "auc_new_items")
ENCODER_LINE = re.compile(r"^(  encoder:\s*)(stock|adapted)\b", re.MULTILINE)


def encoder_of(params_file: Path) -> str | None:
    """The ``text.encoder`` a params.yaml sets (the two-space-indented key of ``text:``)."""
    found = ENCODER_LINE.search(params_file.read_text())
    return found.group(2) if found else None


def adapted_run(workdir: Path) -> Path:
    """``dvc repro`` with ``text.encoder: adapted`` in a worktree of HEAD at ``workdir`` (made
    when it does not exist yet)."""
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}  # the worktree's code, not the installed one
    if not workdir.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(workdir), "HEAD"], cwd=ROOT, check=True)
        local = ROOT / ".dvc" / "config.local"
        if local.is_file():  # the same DVC cache: unchanged stages are checked out, not re-run
            shutil.copy(local, workdir / ".dvc" / "config.local")
        params = workdir / "params.yaml"
        params.write_text(ENCODER_LINE.sub(r"\g<1>adapted", params.read_text(), count=1))
        subprocess.run(["dvc", "checkout", "--quiet"], cwd=workdir, env=env, check=False)
    print(f"dvc repro in {workdir}", flush=True)
    subprocess.run(["dvc", "repro"], cwd=workdir, env=env, check=True)
    return workdir


def compare(stock: dict, adapted: dict) -> list[dict]:
    """One row per candidate and measure: adapted, against stock as the baseline."""
    out = []
    for name in CANDIDATES:
        s, a = stock["candidates"].get(name), adapted["candidates"].get(name)
        if not s or not a:
            continue
        for m in MEASURES:
            if m in s and m in a:
                out.append(row(f"{name} {m}, adapted encoder", a[m], "", f"{name} {m}, stock encoder", s[m]))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--workspace",
        type=Path,
        default=ROOT.parent / f"{ROOT.name}-encoders",
        help="the adapted run's worktree",
    )
    args = ap.parse_args(argv)
    print(f"hardware: {describe()}", flush=True)
    stock_file = ROOT / "metrics" / "evaluate.json"
    if encoder_of(ROOT / "params.yaml") != "stock" or not stock_file.is_file():
        return {"skipped": "needs the project's own `dvc repro` with text.encoder: stock"}
    t0 = time.perf_counter()
    workdir = adapted_run(args.workspace.resolve())
    if encoder_of(workdir / "params.yaml") != "adapted":
        return {"skipped": f"{workdir}/params.yaml does not set text.encoder: adapted"}
    stock = json.loads(stock_file.read_text())
    adapted = json.loads((workdir / "metrics" / "evaluate.json").read_text())
    rows = compare(stock, adapted)
    for r in rows:
        print(f"{r['measure']:50s} {r['value']:.4f}  stock {r['baseline']['value']:.4f}")
    print(f"winner: stock {stock.get('winner')}, adapted {adapted.get('winner')}")
    figures = {
        "hardware": describe(),
        "workspace": str(workdir),
        "winner": {"stock": stock.get("winner"), "adapted": adapted.get("winner")},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return {"rows": rows, "figures": figures}


if __name__ == "__main__":
    main()
