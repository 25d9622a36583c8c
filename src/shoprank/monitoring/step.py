"""`shoprank drift`: this run's latest requests against the data its models were trained on.

The reference is the training split of the training set and the current data its test split
(the most recent requests, the rows evaluation scores), both by :func:`~shoprank.training.data.read_split`.
Per declared model input present in the training set, per the evaluation winner's
position-free scores, and per day of outcomes (CTR, purchase rate), it writes

* ``metrics/drift.json`` (DVC metrics): each input's PSI (numeric inputs also the
  Kolmogorov-Smirnov statistic and p-value) and its status against ``drift.psi_warn`` and
  ``drift.psi_alert``, the scores' drift, the outcomes of both splits and a summary;
* ``metrics/drift/psi.csv`` and ``metrics/drift/outcomes/{reference,current}.csv`` (DVC plots).

Drift is reported, never raised: the step fails only when what it reads is missing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from shoprank.config import Drift, Params
from shoprank.logs import log
from shoprank.monitoring.drift import (
    CATEGORICAL_KINDS,
    NUMERIC_KINDS,
    Thresholds,
    categorical_drift,
    daily_outcomes,
    numeric_drift,
)

logger = logging.getLogger(__name__)
SPLITS = {"reference": "train", "current": "test"}


def required(path: Path, how: str) -> Path:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: missing (run `shoprank {how}` first)")
    return Path(path)


def sample(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``n`` of ``rows``, ascending (how read_frame takes rows)."""
    return np.sort(rng.choice(rows, size=n, replace=False)) if len(rows) > n else rows


def input_drift(ref: pd.DataFrame, cur: pd.DataFrame, settings: Drift) -> dict[str, dict]:
    """Drift of every declared numeric or categorical input that ``ref`` holds (ids, vectors and
    sequences are left out: an id or a text is expected to change)."""
    from shoprank.inputs.declare import present

    limits = Thresholds(settings.psi_warn, settings.psi_alert)
    out: dict[str, dict] = {}
    for x in present(ref.columns):
        if x.kind in NUMERIC_KINDS:
            stats = numeric_drift(_numbers(ref[x.name]), _numbers(cur[x.name]), settings.bins)
        elif x.kind in CATEGORICAL_KINDS:
            stats = categorical_drift(ref[x.name], cur[x.name], settings.max_categories)
        else:
            continue
        out[x.name] = {"kind": x.kind, **stats, "status": limits.status(stats["psi"])}
    return out


def summary(report: dict) -> dict:
    """Counts of each status over the inputs and the scores, and the names that alert."""
    checked = {**report["inputs"], "score": report["scores"]}
    statuses = [v["status"] for v in checked.values()]
    return {
        "checked": len(checked),
        "alerts": statuses.count("alert"),
        "warnings": statuses.count("warn"),
        "alerted": sorted(k for k, v in checked.items() if v["status"] == "alert"),
    }


def run_drift(params: Params) -> dict:
    from shoprank.evaluation.step import texts_for
    from shoprank.inputs.apply import derive
    from shoprank.inputs.frame import read_frame
    from shoprank.models.attributes import pipeline_filled
    from shoprank.models.scorers import load
    from shoprank.training.data import read_split
    from shoprank.training.train import training_set_path

    s = params.drift
    path = required(training_set_path(params), "training-set")
    metrics = Path(params.paths.metrics)
    evaluation = json.loads(required(metrics / "evaluate.json", "evaluate").read_text())
    winner = evaluation["winner"]
    model = required(Path(params.paths.models) / "candidates" / f"{winner}.pt", f"train --candidate {winner}")
    split, _ = read_split(path, params.train.val_share, params.train.test_share)
    rows = {side: split[name] for side, name in SPLITS.items()}
    rng = np.random.default_rng(s.seed)
    scorer = load(model)[1]
    texts = texts_for(params, [scorer])  # what a fine-tuned winner tokenizes
    filled = pipeline_filled(params.paths.models)  # the catalogue's attributes filled from the text
    frames = {
        side: derive(read_frame(path, rows=sample(r, s.sample_rows, rng)), texts=texts, filled=filled)
        for side, r in rows.items()
    }
    scores = {side: scorer.predict(frame, with_position=False) for side, frame in frames.items()}
    outcomes = split_outcomes(path, rows)
    report: dict = {
        side: {"split": SPLITS[side], "rows": len(rows[side]), "sampled_rows": len(frames[side])}
        | _totals(outcomes[side])
        for side in SPLITS
    }
    report["inputs"] = input_drift(frames["reference"].df, frames["current"].df, s)
    score = numeric_drift(scores["reference"], scores["current"], s.bins)
    report["scores"] = {
        "candidate": winner,
        **score,
        "status": Thresholds(s.psi_warn, s.psi_alert).status(score["psi"]),
    }
    report["summary"] = summary(report)
    write(report, outcomes, metrics)
    log(logger, "drift", alerts=report["summary"]["alerts"], warnings=report["summary"]["warnings"])
    return report


def split_outcomes(path: Path, rows: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
    """Outcomes per day of each split over all its rows (three narrow columns are read), days
    counted from the reference's first."""
    names = pq.ParquetFile(path).schema_arrow.names
    columns = [c for c in ("event_timestamp", "clicked", "purchased") if c in names]
    labels = pq.read_table(path, columns=columns).to_pandas()
    start = labels["event_timestamp"].iloc[rows["reference"]].min()
    return {side: daily_outcomes(labels.iloc[r], start) for side, r in rows.items()}


def _totals(days: pd.DataFrame) -> dict:
    """Dates, CTR and purchase rate of a whole split, from its days."""
    n = int(days["impressions"].sum())
    out: dict = {"first_day": days["date"].min(), "last_day": days["date"].max()} if n else {}
    for rate in ("ctr", "purchase_rate"):
        if n and rate in days:
            out[rate] = round(float((days[rate] * days["impressions"]).sum() / n), 6)
    return out


def _numbers(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(np.float64, na_value=np.nan)


def write(report: dict, outcomes: dict[str, pd.DataFrame], metrics: Path) -> None:
    """drift.json (strict JSON: a value that cannot be computed is null) and the plots' CSV files."""
    metrics.mkdir(parents=True, exist_ok=True)
    (metrics / "drift.json").write_text(json.dumps(report, indent=2, sort_keys=True, allow_nan=False))
    plots = metrics / "drift"
    (plots / "outcomes").mkdir(parents=True, exist_ok=True)
    psi = [
        {"name": k, "kind": v["kind"], "psi": v["psi"], "status": v["status"]}
        for k, v in report["inputs"].items()
    ]
    psi.append(
        {
            "name": "score",
            "kind": "score",
            "psi": report["scores"]["psi"],
            "status": report["scores"]["status"],
        }
    )
    pd.DataFrame(psi, columns=["name", "kind", "psi", "status"]).to_csv(plots / "psi.csv", index=False)
    for side, days in outcomes.items():
        days.to_csv(plots / "outcomes" / f"{side}.csv", index=False)
