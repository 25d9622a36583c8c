"""Wall time and peak memory of every pipeline stage, per profile, beside the previous path.

For each profile (``--profiles``, default: the default profile only) a private project
under ``--work`` runs the stages of dvc.yaml as their commands, each after the stages it
reads from (the train stage once per candidate), one child process at a time: wall time,
and peak memory as the child's peak resident set (``wait4``'s ``ru_maxrss``). Beside them, where
the profile is small enough (``--baseline-max-impressions``), the previous path of the
same stage in the same run: the training set by Feast's file offline store
(``features.offline_engine: feast``) and each candidate trained with the whole split in
one chunk (``train.chunk_rows`` beyond the split). Cost per million impressions is each
stage's seconds over the profile's impressions in millions.

Resumable: every finished stage is recorded in ``<work>/<profile>/progress.json`` and
not run again while the project's params are the same; a changed params.yaml starts the
profile clean. Each child's output goes to ``<work>/<profile>/logs/<stage>.log``.
Run: `python -m bench.bench_scale [--profiles default,large,xl] [--work DIR] [--quick]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.hardware import describe
from bench.project import BIN, write_params
from bench.results import ROOT, printed, row

WHOLE = 10**12  # train.chunk_rows no split reaches: the split in one chunk, as training read it before
PREVIOUS = {  # stage -> what its previous path sets (params keys as SHOPRANK__ overrides)
    "training-set": {"features.offline_engine": "feast"},
    "train": {"train.chunk_rows": str(WHOLE)},
}
WORK = Path(tempfile.gettempdir()) / "shoprank-bench-scale"


def stages(candidates: list[str]) -> list[tuple[str, list[str]]]:
    """dvc.yaml's stages as DVC renders them (name, command), each after those it reads from.

    The order is DVC's dependency graph (dags/shoprank_wiring.py reads it, as the Airflow DAG
    does), ties in dvc.yaml's order; of the train stages, only the ``candidates``'.
    """
    sys.path.insert(0, str(ROOT / "dags"))
    from shoprank_wiring import dvc_pipeline

    kept = [s for s in dvc_pipeline(ROOT) if s.step != "train" or s.name.split("@")[1] in candidates]
    names = {s.name for s in kept}
    done: list[str] = []
    waiting = list(kept)
    while waiting:
        ready = next(s for s in waiting if all(u in done or u not in names for u in s.upstream))
        done.append(ready.name)
        waiting.remove(ready)
    commands = {s.name: shlex.split(s.cmd.split("#")[0])[1:] for s in kept}
    return [(name, commands[name]) for name in done]


def project(root: Path, profile: str, quick: bool, candidates: list[str]) -> Path:
    """A private project's params.yaml under ``root`` on ``profile`` (the Feast repo: ``root/features``)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(root / v) for k, v in raw["paths"].items()}
    raw["text"]["cache_dir"] = str(root / "cache")  # its own: the repo's data/ is left alone
    raw["text"]["encoders_dir"] = str(root / "models" / "encoders")
    raw["features"]["repo"] = str(root / "features")  # a private copy: its own registry and online store
    raw["data"]["source"] = "simulate"
    raw["simulate"]["profile"] = profile
    raw["train"]["candidates"] = {k: v for k, v in raw["train"]["candidates"].items() if k in candidates}
    if quick:
        raw["adapt"].update({"max_pairs": 256, "eval_pairs": 128, "epochs": 1})
    return write_params(root, raw, quick)


def run_stage(args: list[str], params: Path, log: Path, overrides: dict[str, str]) -> dict[str, float]:
    """One `shoprank` command in a child process: its wall seconds and peak RSS (GiB)."""
    env = {**os.environ, "SHOPRANK_NO_PROGRESS": "1"}
    env.update({"SHOPRANK__" + k.upper().replace(".", "__"): v for k, v in overrides.items()})
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(BIN / "shoprank"), *args, "--params", str(params)], env=env, stdout=out, stderr=out
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"shoprank {' '.join(args)} failed (log: {log}):\n{log.read_text()[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3)}


def previous(args: list[str], root: Path) -> dict[str, str] | None:
    """The overrides that run ``args`` on the previous path, into ``root/previous``; None if none."""
    base = PREVIOUS.get(args[0])
    if base is None:
        return None
    out = root / "previous"
    if args[0] == "training-set":
        return {**base, "paths.training": str(out / "training")}
    return {**base, "paths.models": str(out / "models"), "paths.metrics": str(out / "metrics")}


def run_profile(
    profile: str, work: Path, quick: bool, candidates: list[str], max_baseline: int
) -> dict[str, Any]:
    """Every stage of ``profile`` (and its previous path where it fits), resuming finished ones."""
    from shoprank.config import load_params
    from shoprank.features.store import copy_repo

    root = work / profile
    root.mkdir(parents=True, exist_ok=True)
    params = project(root, profile, quick, candidates)
    digest = hashlib.sha256(params.read_bytes()).hexdigest()
    state_path = root / "progress.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state.get("params") != digest:  # another configuration: its stages do not count
        for entry in root.iterdir():
            if entry.name != "params.yaml":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        state = {"params": digest, "stages": {}, "previous": {}}
    if not (root / "features").exists():
        copy_repo(ROOT / "features", root)
    size = load_params(params).simulate.sized(profile)
    impressions = size.n_requests * load_params(params).simulate.market.page_size
    fits = impressions <= max_baseline
    (root / "logs").mkdir(exist_ok=True)
    plan = stages(candidates)
    for k, (name, args) in enumerate(plan, 1):
        for kind, overrides in (("stages", {}), ("previous", previous(args, root))):
            if overrides is None or (kind == "previous" and not fits) or name in state[kind]:
                if name in state[kind]:
                    print(f"[{profile}] {k}/{len(plan)} {name} ({kind}): done earlier, kept", flush=True)
                continue
            print(f"[{profile}] {k}/{len(plan)} {name} ({kind}) ...", flush=True)
            log = root / "logs" / f"{name.replace('@', '-')}{'' if kind == 'stages' else '.previous'}.log"
            got = state[kind][name] = run_stage(args, params, log, overrides)
            tmp = state_path.with_name(f".{state_path.name}.tmp")
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(state_path)  # a stop mid-write leaves the last complete record
            print(
                f"[{profile}] {name} ({kind}): {got['seconds']:.1f} s, peak {got['peak_rss_gib']:.2f} GiB",
                flush=True,
            )
    why = (
        None
        if fits
        else f"not run: {impressions:,} impressions > --baseline-max-impressions {max_baseline:,}"
    )
    return {
        "impressions": impressions,
        "stages": state["stages"],
        "previous": state["previous"],
        "previous_not_run": why,
    }


def rows(figures: dict[str, Any]) -> list[dict]:
    out = []
    for profile, got in figures["profiles"].items():
        millions = got["impressions"] / 1e6
        for name, fig in got["stages"].items():
            prev = got["previous"].get(name)
            base = f"{profile}: {name}, previous path" if prev else None
            out.append(
                row(f"{profile}: {name} wall time", fig["seconds"], "s", base, prev and prev["seconds"])
            )
            out.append(
                row(
                    f"{profile}: {name} peak RSS",
                    fig["peak_rss_gib"],
                    "GiB",
                    base,
                    prev and prev["peak_rss_gib"],
                )
            )
            out.append(
                row(
                    f"{profile}: {name} cost per million impressions",
                    round(fig["seconds"] / millions, 1),
                    "s",
                )
            )
        total = round(sum(f["seconds"] for f in got["stages"].values()), 1)
        out.append(row(f"{profile}: end to end wall time", total, "s"))
        out.append(
            row(
                f"{profile}: end to end peak RSS",
                max(f["peak_rss_gib"] for f in got["stages"].values()),
                "GiB",
            )
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    from shoprank.training.train import CANDIDATES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", default="default", help="comma-separated simulate.profiles entries")
    ap.add_argument(
        "--work", type=Path, default=WORK, help=f"where the projects run and resume (default {WORK})"
    )
    ap.add_argument("--quick", action="store_true", help="small models and two epochs (a smoke run)")
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="the candidates trained")
    ap.add_argument(
        "--baseline-max-impressions",
        type=int,
        default=10_000_000,
        help="the previous path only for profiles up to this many impressions (it holds the split at once)",
    )
    args = ap.parse_args(argv)
    candidates = [c for c in args.candidates.split(",") if c]
    figures: dict[str, Any] = {"hardware": describe(), "quick": args.quick, "profiles": {}}
    print(f"hardware: {figures['hardware']}")
    for profile in [p for p in args.profiles.split(",") if p]:
        figures["profiles"][profile] = run_profile(
            profile, args.work, args.quick, candidates, args.baseline_max_impressions
        )
    return printed(rows(figures), figures)


if __name__ == "__main__":
    main()
