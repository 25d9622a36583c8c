"""`shoprank evaluate`: every trained candidate on the test split, written for DVC.

Outputs: ``metrics/evaluate.json`` (one entry per candidate, and the winner by
``select.metric``) and ``metrics/reliability/<candidate>.csv`` (calibration curves, DVC plots).
Simulated batches carry ground truth (``paths.truth``); with it the report adds the
ratio to the Bayes-optimal AUC and the re-ranking of every retrieved candidate.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from shoprank.config import Params
from shoprank.evaluation.evaluate import Truth, evaluate_scorer
from shoprank.logs import log, timed
from shoprank.models.scorers import load
from shoprank.training.data import VECTOR_COLUMNS, Frame, Vectors, dense, derive, read_frame, time_split
from shoprank.training.train import training_set_path

logger = logging.getLogger(__name__)
FEATURE_SERVICE = "ctr_model_v1"


def load_truth(truth_dir: Path, test: pd.DataFrame) -> Truth | None:
    """Ground truth aligned with the test rows, or None for real (non-simulated) logs."""
    truth_dir = Path(truth_dir)
    if not (truth_dir / "candidates.parquet").is_file():
        return None
    keys = test[["request_id", "item_id"]]
    p = pd.read_parquet(truth_dir / "impressions.parquet")
    p_click = keys.merge(p, on=["request_id", "item_id"], how="left")["p_click"].to_numpy()
    cand = pd.read_parquet(truth_dir / "candidates.parquet")
    cand = cand[cand["request_id"].isin(set(test["request_id"]))].reset_index(drop=True)
    exam = (
        pd.read_parquet(truth_dir / "examination.parquet").sort_values("position")["examination"].to_numpy()
    )
    if np.isnan(p_click).any():
        raise ValueError(f"{truth_dir}: ground truth does not cover the test impressions (another batch?)")
    return Truth(p_click, cand, exam)


def candidate_frame(params: Params, test: pd.DataFrame, truth: Truth) -> Frame:
    """Point-in-time features of every retrieved candidate of the test requests (Feast)."""
    from shoprank.features import open_store
    from shoprank.features.pit import historical_features
    from shoprank.features.queries import query_ids

    req = test.drop_duplicates("request_id").set_index("request_id")[["event_timestamp", "user_id", "query"]]
    rows = truth.candidates[["request_id", "item_id"]].join(req, on="request_id")
    rows["query_id"] = query_ids(rows["query"].fillna(""))
    store = open_store(params.features)
    keys = rows[["user_id", "item_id", "query_id", "event_timestamp"]]
    feats, arrays = historical_features(store, keys, FEATURE_SERVICE, positions=VECTOR_COLUMNS)
    df = pd.concat([rows.reset_index(drop=True), feats.drop(columns=list(keys.columns))], axis=1)
    df["position"], df["clicked"], df["propensity"] = 0, 0, np.nan
    vectors = {}
    for name, (pos, column) in arrays.items():  # each distinct vector once: codes into its table
        table = dense(column)
        vectors[name] = Vectors(pos + 1, np.concatenate([np.zeros((1, table.shape[1]), np.float32), table]))
    return Frame(derive(df), vectors)


def run_evaluate(params: Params) -> dict:
    from shoprank.selection import select_winner

    s = params.train
    frame = read_frame(training_set_path(params))
    derive(frame.df)
    split = time_split(frame.df, s.val_share, s.test_share)
    test = frame.take(split["test"])
    train_queries = set(frame.df["query"].iloc[split["train"]].fillna(""))
    truth = load_truth(params.paths.truth, test.df)
    candidates = None
    if truth is not None:
        with timed(logger, "candidate features", rows=len(truth.candidates)):
            candidates = candidate_frame(params, test.df, truth)
    report: dict = {
        "test_rows": len(test),
        "test_requests": int(test.df["request_id"].nunique()),
        "candidates": {},
    }
    curves = []
    for name in s.candidates:
        path = Path(params.paths.models) / "candidates" / f"{name}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: candidate {name!r} is not trained (run `shoprank train`)")
        _, scorer = load(path)
        with timed(logger, "evaluated", candidate=name):
            metrics, curve = evaluate_scorer(scorer, test, train_queries, truth, candidates)
        report["candidates"][name] = {k: round(v, 6) for k, v in metrics.items()}
        curves.append(curve.assign(candidate=name))
    report["winner"] = select_winner(
        report["candidates"], params.select.metric, params.select.higher_is_better
    )
    out = Path(params.paths.metrics)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluate.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    curves_dir = out / "reliability"
    curves_dir.mkdir(exist_ok=True)
    for stale in curves_dir.glob("*.csv"):  # a candidate dropped from train.candidates
        stale.unlink()
    for curve in curves:
        curve.to_csv(curves_dir / f"{curve['candidate'].iloc[0]}.csv", index=False)
    log(logger, "evaluation", winner=report["winner"], metric=params.select.metric)
    return report
