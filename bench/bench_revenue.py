"""Ranking for sales: the revenue objective against the click objective, on the simulator's truth.

Runs the pipeline's steps from ``shoprank raw`` to ``shoprank train`` in a private project
on a simulated profile (``default`` unless told), training the candidates with a purchase
head (``bert_ctr`` and ``lightgbm``), then re-ranks every test request's full candidate
set (the 50 the legacy retrieval returned) by each ``serve.objective`` with the trained
models, exactly as ``shoprank evaluate`` does. Every ranking is scored with the truth:

    expected clicks@10   sum over the top 10 of examination(position) * P(click)
    expected revenue@10  sum over the top 10 of examination(position) * P(click)
                         * P(purchase | click) * price

and compared with the click objective of the same model in the same run, with the
legacy engine's ranking and with the revenue oracle (ranking by the true expected sales).
The click objective's expected clicks beside the revenue objective's say what the sales
cost in clicks.

    python -m bench.bench_revenue                    # the default profile
    python -m bench.bench_revenue --profile tiny --quick   # a smoke run
    python -m bench.bench_revenue --project params.yaml    # the models `dvc repro` trained here
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml

from bench.hardware import describe
from bench.project import run_steps, write_params
from bench.results import ROOT, printed, row

STEPS = ("raw", "validate", "features", "materialize", "training-set", "train")
CANDIDATES = ("bert_ctr", "lightgbm")


def project(root: Path, profile: str, quick: bool) -> Path:
    """A private project under ``root``: params.yaml on ``profile``, the Feast repo copy."""
    from shoprank.features.store import copy_repo

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(root / v) for k, v in raw["paths"].items()}
    raw["text"]["cache_dir"] = str(ROOT / raw["text"]["cache_dir"])  # embeddings are shared, by text
    raw["features"]["repo"] = str(copy_repo(ROOT / "features", root))
    raw["data"]["source"] = "simulate"
    raw["simulate"]["profile"] = profile
    raw["train"]["candidates"] = {k: v for k, v in raw["train"]["candidates"].items() if k in CANDIDATES}
    return write_params(root, raw, quick)


def measure(params_path: Path) -> dict:
    """Expected clicks and revenue in the top 10 of every candidate under every objective."""
    from shoprank.config import load_params
    from shoprank.evaluation.evaluate import rerank_metrics
    from shoprank.evaluation.step import candidate_scores, load_truth
    from shoprank.inputs.frame import read_frame
    from shoprank.models.objective import OBJECTIVES
    from shoprank.models.scorers import load
    from shoprank.training.data import read_split
    from shoprank.training.train import training_set_path

    p = load_params(params_path)
    path = training_set_path(p)
    split, _ = read_split(path, p.train.val_share, p.train.test_share)
    test = read_frame(path, rows=split["test"]).df
    truth = load_truth(p.paths.truth, test)
    if truth is None or not truth.has_purchases:
        raise RuntimeError("the simulated batch has no purchase truth")
    scorers = {n: load(Path(p.paths.models) / "candidates" / f"{n}.pt")[1] for n in CANDIDATES}
    pools = candidate_scores(p, test, truth, scorers)
    models: dict = {}
    for name, pool in pools.items():
        models[name] = {"purchase_head": pool.purchase is not None}
        for objective in OBJECTIVES:
            m = rerank_metrics(pool, test, truth, objective)
            models[name][objective] = {k: m[k] for k in ("expected_clicks@10", "expected_revenue@10")}
    m = rerank_metrics(pools[CANDIDATES[0]], test, truth, "clicks")
    return {
        "test_requests": int(truth.candidates["request_id"].nunique()),
        "candidates_per_request": round(len(truth.candidates) / truth.candidates["request_id"].nunique(), 1),
        "models": models,
        "legacy": {k: m[f"{k}_legacy"] for k in ("expected_clicks@10", "expected_revenue@10")},
        "oracle": {
            "expected_clicks@10 (click oracle)": m["expected_clicks@10_oracle"],
            "expected_revenue@10 (revenue oracle)": m["expected_revenue@10_oracle"],
        },
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="default", help="simulate.profiles entry (default: default)")
    ap.add_argument("--quick", action="store_true", help="small models and two epochs (a smoke run)")
    ap.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it")
    ap.add_argument(
        "--project",
        type=Path,
        default=None,
        help="a params.yaml whose pipeline has run (its simulated batch and trained candidates): no training",
    )
    args = ap.parse_args(argv)
    print(f"hardware: {describe()}")
    if args.project is not None:
        from shoprank.config import load_params

        figures = measure(args.project)
        profile = load_params(args.project).simulate.profile
        figures.update({"profile": profile, "quick": False, "step_seconds": {}, "project": str(args.project)})
        return report(figures)
    with tempfile.TemporaryDirectory(prefix="bench-revenue-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        params = project(root, args.profile, args.quick)
        steps = run_steps(params, STEPS)
        figures = measure(params)
    figures.update({"profile": args.profile, "quick": args.quick, "step_seconds": steps})
    return report(figures)


def report(figures: dict) -> dict:
    """Print the table; the rows: each model's revenue and clicks under the revenue objective
    against the click objective of the same model."""
    models = figures["models"]
    print(f"\nprofile {figures['profile']}: {figures['test_requests']:,} test requests, top 10")
    print(f"{'ranking':32s} {'exp. revenue@10':>16s} {'exp. clicks@10':>15s}")
    for name, m in models.items():
        for objective in ("clicks", "purchases", "revenue"):
            rev, clk = m[objective]["expected_revenue@10"], m[objective]["expected_clicks@10"]
            print(f"{name + ', ' + objective:32s} {rev:16.3f} {clk:15.4f}")
    legacy, oracle = figures["legacy"], figures["oracle"]
    print(f"{'legacy engine':32s} {legacy['expected_revenue@10']:16.3f} {legacy['expected_clicks@10']:15.4f}")
    for k, v in oracle.items():
        print(f"{k:32s} {v:16.3f}")
    rows = []
    for name, m in models.items():
        rev, clk = m["revenue"], m["clicks"]
        rows.append(
            row(
                f"{name}, revenue objective: expected revenue@10",
                rev["expected_revenue@10"],
                "currency units per request",
                f"{name}, click objective",
                clk["expected_revenue@10"],
            )
        )
        rows.append(
            row(
                f"{name}, revenue objective: expected clicks@10",
                rev["expected_clicks@10"],
                "clicks per request",
                f"{name}, click objective",
                clk["expected_clicks@10"],
            )
        )
    best = max(m["revenue"]["expected_revenue@10"] for m in models.values())
    rows.append(
        row(
            "best revenue objective: share of the revenue oracle's expected revenue@10",
            best / oracle["expected_revenue@10 (revenue oracle)"],
            "share",
        )
    )
    return printed(rows, figures)


if __name__ == "__main__":
    main()
