"""Online experiments on the simulator: an A/B split against team-draft interleaving.

The champion that `dvc repro` packaged serves the test split's requests in time order, in
process (``Ranker.rank`` on each request's 50 logged candidates, a page of 10), with an
experiment of two arms: the champion and a deliberately worse challenger (the
``popularity`` candidate). The simulator's truth plays the shoppers: an item at position
``p`` is clicked with probability ``examination(p) * P(click)`` and bought after a click
with ``P(purchase | click)``; clicks and purchases go back through the service's feedback
path with their tokens, into a private feedback log. ``shoprank experiment``'s step then
reads that log as it would a shop's, and replays its sequential test in time order.

Printed: for A/B and for interleaving, the requests and impressions the sequential test
needed to decide, and the decision; the ratio is interleaving's impressions over A/B's.
Each run reads the report every few hundred requests and stops once the test decides.

A third run, an A/B split in which a share of the requests is shown in a uniformly random
order (``experiment.shuffle_share``), gives an off-policy estimate from its log alone (the
logging probabilities and the clicks) of the click-through per slot of a ranking no arm
served (the ``lightgbm`` candidate), next to that ranking's true value on the same
requests. Without the shuffles such an estimate has no support wherever that ranking puts
an item where neither arm does.

    python -m bench.bench_experiment --project params.yaml   # after `dvc repro`
    python -m bench.bench_experiment --project params.yaml --requests 2000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.hardware import describe
from bench.results import printed, row

CHALLENGER = "popularity"
TARGET = "lightgbm"  # a ranking no arm serves, estimated off-policy from the A/B log
CHECK_EVERY = 500  # requests between two readings of the experiment's report
SHUFFLE = 0.2  # the off-policy run: share of requests shown in a uniformly random order


def sessions(params: Any, limit: int | None) -> tuple[list[dict], np.ndarray]:
    """The test split's requests in time order with their candidates' truth; the examination curve."""
    from shoprank.evaluation.step import load_truth
    from shoprank.inputs.frame import read_frame
    from shoprank.training.data import read_split
    from shoprank.training.train import training_set_path

    path = training_set_path(params)
    split, _ = read_split(path, params.train.val_share, params.train.test_share)
    test = read_frame(path, rows=split["test"]).df
    truth = load_truth(params.paths.truth, test)
    if truth is None or not truth.has_purchases:
        raise RuntimeError(
            "the batch has no simulator truth with purchases: run `dvc repro` on a simulated profile"
        )
    heads = test.sort_values("event_timestamp", kind="stable").drop_duplicates("request_id")
    cands = {rid: g for rid, g in truth.candidates.groupby("request_id", sort=False)}
    out = []
    for r in heads.itertuples():
        g = cands.get(r.request_id)
        if g is None:
            continue
        out.append(
            {
                "user": r.user_id or None,
                "query": r.query or "",
                "items": g["item_id"].astype(str).tolist(),
                "p_click": dict(zip(g["item_id"].astype(str), g["attractiveness"], strict=True)),
                "p_buy": dict(zip(g["item_id"].astype(str), g["p_purchase"], strict=True)),
            }
        )
        if limit is not None and len(out) >= limit:
            break
    return out, truth.examination


def arms_bundle(params: Any, experiment: Any, out: Path) -> Path:
    """The packaged champion's bundle (links to its files) with the experiment's arm models."""
    from shoprank.experiments.arms import package_arms
    from shoprank.ranking.loader import load_bundle_path

    bundle = load_bundle_path(None)
    out.mkdir(parents=True)
    for entry in bundle.iterdir():
        if entry.name != "arms":
            (out / entry.name).symlink_to(entry)
    package_arms(experiment, Path(params.paths.models), out)
    return out


def serve(
    params: Any,
    bundle: Path,
    run: str,
    work: Path,
    requests: list[dict],
    exam: np.ndarray,
    seed: int,
    shuffle: float = 0.0,
    stop_when_decided: bool = True,
) -> dict:
    """Serve ``requests`` under the experiment of ``run`` (ab, interleave, shuffled); the
    shoppers' clicks from the truth. Every ``CHECK_EVERY`` requests the experiment's report
    is read as an operator would, and serving stops once its sequential test has decided."""
    from shoprank.config_experiment import Arm, Experiment
    from shoprank.experiments.step import run_experiment
    from shoprank.feedback import FeedbackLog
    from shoprank.ranking.ranker import Ranker

    mode = "interleave" if run == "interleave" else "ab"
    experiment = Experiment(
        name=f"bench-{run}",
        mode=mode,
        arms=[
            Arm(name="champion", model="champion", share=0.5),
            Arm(name=CHALLENGER, model=CHALLENGER, share=0.5),
        ],
        metric="ctr",
        # the mixture variance is on the tested metric's scale: about the squared effect worth
        # finding, a CTR difference under A/B, a preference in [-1, 1] under interleaving
        mixture_variance=1e-2 if mode == "interleave" else 1e-4,
        shuffle_share=shuffle,
    )
    # the run's own log, set-aside records and report, not the project's
    own = {
        "feedback": work / run / "feedback",
        "quarantine": work / run / "q",
        "metrics": work / run / "metrics",
    }
    paths = params.paths.model_copy(update=own)
    p = params.model_copy(update={"experiment": experiment, "paths": paths})
    settings = p.serve.model_copy(update={"feature_ttl_s": 3600.0, "reload_s": 0.0})
    ranker = Ranker(bundle, p, settings=settings)
    # the test split names shoppers by their pseudonyms already
    ranker.shopper = lambda user_id: user_id  # type: ignore[method-assign]
    rng = np.random.default_rng(seed)
    served = clicks = impressions = 0
    target = Target(ranker, Path(params.paths.models)) if shuffle > 0 else None
    report: dict = {}
    start = time.perf_counter()
    try:
        for served, r in enumerate(requests, start=1):
            body = ranker.rank(r["query"], r["user"], r["items"], shown=10)
            if target is not None:
                target.rank(body["request_id"], r, exam)
            for x in body["results"][:10]:
                impressions += 1
                if rng.random() < exam[x["position"] - 1] * r["p_click"][x["item_id"]]:
                    clicks += 1
                    ranker.record_feedback(body["request_id"], x["item_id"], "click", x["feedback_token"])
                    if rng.random() < r["p_buy"][x["item_id"]]:
                        ranker.record_feedback(
                            body["request_id"], x["item_id"], "purchase", x["feedback_token"]
                        )
            if served % CHECK_EVERY == 0:
                ranker.served.appender.flush(30.0)
                report = run_experiment(p)
                decision = report["sequential"][CHALLENGER]["decision"]
                print(f"  {run}: {served:,} requests served, decision {decision!r}", flush=True)
                if stop_when_decided and decision != "continue":
                    break
        ranker.served.appender.flush(30.0)
    finally:
        ranker.stop_refresh()
    seconds = time.perf_counter() - start
    report = run_experiment(p)
    test = report["sequential"][CHALLENGER]
    keep = ("requests", "units", "impressions", "clicks", "ctr", "wins", "placed")
    return {
        "arms": {a: {k: v for k, v in x.items() if k in keep} for a, x in report.get("arms", {}).items()},
        "offpolicy": target.estimate(FeedbackLog(paths.feedback).read()) if target is not None else None,
        "shuffle_share": shuffle,
        "requests": served,
        "impressions": impressions,
        "clicks": clicks,
        "serve_seconds": round(seconds, 1),
        "decision": test["decision"],
        "decided_at": test["decided_at"],
        "p_value": test["p_value"],
        "estimate": test["estimate"],
    }


class Target:
    """A ranking no arm serves (the ``lightgbm`` candidate): its off-policy estimate from the
    A/B log, against its true CTR.

    Its positions come from scoring each request's candidates as it is served; the estimate
    then reads only the log: the served slots, their logging probabilities (over the arm
    draw) and the clicks (SNIPS under the item-position model, evaluation/offpolicy.py).
    """

    def __init__(self, ranker: Any, models: Path):
        from shoprank.models.scorers import load

        self.ranker = ranker
        self.scoring = ranker.new_scoring(load(models / "candidates" / f"{TARGET}.pt")[1])
        self.positions: dict[tuple[str, str], int] = {}
        self.true_clicks: list[float] = []

    def rank(self, request_id: str, r: dict, exam: np.ndarray) -> None:
        rows = self.ranker.rows_of(r["items"])
        s = self.ranker.score(rows, r["query"], r["user"], request_id, {})
        scores, _ = self.scoring.rescore(s)
        order = np.argsort(-scores, kind="stable")
        for position, j in enumerate(order.tolist(), start=1):
            self.positions[(request_id, r["items"][j])] = position
        top = [r["items"][j] for j in order[:10]]
        self.true_clicks.append(float(sum(exam[k] * r["p_click"][x] for k, x in enumerate(top))))

    def estimate(self, log: pd.DataFrame) -> dict:
        from shoprank.evaluation.offpolicy import snips_ctr

        served = log[log["event"] == "served"]
        clicks = log[log["event"] == "click"]
        clicked = set(zip(clicks["request_id"], clicks["item_id"], strict=True))
        keys = list(zip(served["request_id"], served["item_id"], strict=True))
        est = snips_ctr(
            served["position"].to_numpy(),
            np.array([k in clicked for k in keys], dtype=float),
            served["propensity"].to_numpy(),
            np.array([self.positions.get(k, 0) for k in keys]),
            max_position=10,
        )
        truth = float(np.mean(self.true_clicks)) / 10
        return {
            "target": TARGET,
            "estimated_ctr": est.ctr,
            "ci95": [est.ctr - 1.96 * est.se, est.ctr + 1.96 * est.se],
            "true_ctr": truth,
            "relative_error": (est.ctr - truth) / truth,
            "logged_ctr": est.logged_ctr,
            "ips_ctr": est.ips_ctr,
            "matched_slots": est.n_matched,
            "slots": est.n_slots,
            "effective_sample_size": round(est.ess, 1),
        }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--project", type=Path, default=Path("params.yaml"), help="a params.yaml whose pipeline has run"
    )
    ap.add_argument("--requests", type=int, default=None, help="serve only the first N test requests")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--offpolicy-requests", type=int, default=4000, help="requests of the off-policy run")
    ap.add_argument("--keep", type=Path, default=None, help="serve into this folder and keep its logs")
    args = ap.parse_args(argv)
    from shoprank.config import load_params
    from shoprank.config_experiment import Arm, Experiment

    print(f"hardware: {describe()}")
    params = load_params(args.project)
    requests, exam = sessions(params, args.requests)
    print(f"{len(requests):,} test requests of profile {params.simulate.profile}")
    both = Experiment(
        name="bench",
        arms=[
            Arm(name="champion", model="champion", share=0.5),
            Arm(name=CHALLENGER, model=CHALLENGER, share=0.5),
        ],
    )
    figures: dict[str, Any] = {"profile": params.simulate.profile, "test_requests": len(requests)}
    with tempfile.TemporaryDirectory(prefix="bench-experiment-") as tmp:
        work = args.keep or Path(tmp)
        bundle = arms_bundle(params, both, work / "bundle")
        for run in ("ab", "interleave"):
            figures[run] = serve(params, bundle, run, work, requests, exam, args.seed)
            print(f"  {run}: {figures[run]['arms']}")
        shuffled = requests[: args.offpolicy_requests]
        figures["offpolicy"] = serve(
            params, bundle, "shuffled", work, shuffled, exam, args.seed, SHUFFLE, stop_when_decided=False
        )
    return report(figures)


def report(figures: dict) -> dict:
    """The decisions and the impressions each design needed; interleaving's over A/B's."""
    for mode in ("ab", "interleave"):
        f = figures[mode]
        at = f["decided_at"] or {}
        print(
            f"{mode:10s} decision {f['decision']!r} after {at.get('requests', '-')} requests, "
            f"{at.get('impressions', '-')} impressions (of {f['requests']:,} served; p {f['p_value']:.2g})"
        )
    ab, il = figures["ab"]["decided_at"], figures["interleave"]["decided_at"]
    measure = f"impressions until the sequential test decides champion vs {CHALLENGER}"
    rows = [
        row(
            f"interleaving: {measure}",
            il["impressions"] if il else None,
            "impressions",
            "A/B split, 50/50 by shopper",
            ab["impressions"] if ab else None,
        ),
        row(f"A/B split: {measure}", ab["impressions"] if ab else None, "impressions"),
    ]
    ope = figures["offpolicy"]["offpolicy"]
    if ope:
        print(
            f"off-policy CTR per slot (top 10) of {ope['target']} from an A/B log with "
            f"{figures['offpolicy']['shuffle_share']:.0%} shuffled requests: "
            f"{ope['estimated_ctr']:.4f} (95% CI {ope['ci95'][0]:.4f} to {ope['ci95'][1]:.4f}), "
            f"truth {ope['true_ctr']:.4f} (logged {ope['logged_ctr']:.4f}; {ope['matched_slots']:,} of "
            f"{ope['slots']:,} slots matched, effective sample size {ope['effective_sample_size']:,})"
        )
        rows.append(
            row(
                f"off-policy CTR per slot of {ope['target']} (no arm), from an A/B log with shuffles",
                ope["estimated_ctr"],
                "clicks per shown slot",
                "its true CTR per slot (simulator)",
                ope["true_ctr"],
            )
        )
    return printed(rows, figures)


if __name__ == "__main__":
    main()
