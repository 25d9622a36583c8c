"""`shoprank experiment`: the report of the online experiment of params.yaml, from the feedback log.

One function, :func:`run_experiment`, is the step: the CLI, the daily Airflow task
(dags/shoprank_experiment.py) and the tests call it. It reads the whole log every time (the
report is a function of the log, so a rerun writes the same report) and writes

* ``<paths.metrics>/experiment.json``: the report (:mod:`.report`) with the counts of what was
  read and set aside; strict JSON, a value that cannot be computed is null;
* ``<paths.quarantine>/experiment/<name>-<reason>.jsonl``: the records set aside
  (:mod:`.outcomes`), each with its ``reason``; a file whose reason no longer applies is removed.

Revenue is the catalogue price of each purchased item, from the current validated batch's
catalog table; without one, revenue is reported as unknown (and ``metric: revenue`` is an error).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from shoprank.config import Params
from shoprank.experiments.outcomes import REASONS, Outcomes, read_outcomes
from shoprank.experiments.report import ab_report, interleave_report
from shoprank.feedback.log import FeedbackLog
from shoprank.logs import log

logger = logging.getLogger(__name__)

METRICS_FILE = "experiment.json"
QUARANTINE = "experiment"  # folder under paths.quarantine


class NoExperiment(ValueError):
    """params.yaml configures no experiment (``experiment.name`` is empty)."""


def report_path(params: Params) -> Path:
    return Path(params.paths.metrics) / METRICS_FILE


def catalogue_prices(validated: Path) -> tuple[pd.Series | None, str | None]:
    """(price per item id, the catalog file) of the current validated batch; (None, None) without one."""
    from shoprank.quality.store import current_batch

    try:
        path = current_batch(validated) / "catalog.parquet"
    except FileNotFoundError:
        return None, None
    if not path.is_file():
        return None, None
    cat = pd.read_parquet(path, columns=["item_id", "price"])
    return cat.drop_duplicates("item_id").set_index("item_id")["price"].astype("float64"), str(path)


def run_experiment(params: Params) -> dict:
    """Read the experiment, write its report and set-aside records; return the report."""
    e = params.experiment
    if not e.active:
        raise NoExperiment(
            "experiment.name is empty in params.yaml: no experiment is configured "
            "(set experiment.name and experiment.arms)"
        )
    prices, catalog = catalogue_prices(Path(params.paths.validated))
    if prices is None and e.metric == "revenue":
        raise FileNotFoundError(
            f"{params.paths.validated}: no validated catalog, so no prices for experiment.metric "
            "revenue (run `shoprank validate`)"
        )
    got = FeedbackLog(params.paths.feedback).read_all()
    out = read_outcomes(got.frame, e, prices)
    report = header(out, params) | {
        "catalog": catalog,
        "log": {"unreadable": len(got.set_aside), "torn": got.torn},
    }
    report |= ab_report(out, e) if e.mode == "ab" else interleave_report(out, e)
    report["decisions"] = {arm: s["decision"] for arm, s in report["sequential"].items()}
    report["set_aside"] = write_set_aside(out, Path(params.paths.quarantine) / QUARANTINE, e.name)
    path = report_path(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strict(report), indent=2, sort_keys=True, allow_nan=False) + "\n")
    log(logger, "experiment", name=e.name, requests=report["requests"], decisions=report["decisions"])
    return report


def header(out: Outcomes, params: Params) -> dict:
    """What was analysed: the settings, the time span, the counts, and a note when nothing is left."""
    e, req = params.experiment, out.requests
    note = None
    if out.counts["served"] == 0:
        note = f"the feedback log has no served record of experiment {e.name!r}"
    elif req.empty:
        note = f"every served record of experiment {e.name!r} was set aside"
    settings = e.model_dump(include={"name", "mode", "unit", "metric", "alpha", "srm_alpha"})
    settings |= e.model_dump(include={"mixture_variance", "min_units"})
    return {
        "experiment": e.name,
        "settings": settings,
        "first_ts": None if req.empty else pd.Timestamp(req["ts"].min()).isoformat(),
        "last_ts": None if req.empty else pd.Timestamp(req["ts"].max()).isoformat(),
        "requests": len(req),
        "records": out.counts,
        "note": note,
    }


def write_set_aside(out: Outcomes, folder: Path, name: str) -> dict[str, dict[str, Any]]:
    """Each reason's records as ``<folder>/<name>-<reason>.jsonl`` (replaced whole); reason -> count, path."""
    done: dict[str, dict[str, Any]] = {}
    for reason, records in out.set_aside.items():
        path = folder / f"{name}-{reason}.jsonl"
        if records.empty:
            path.unlink(missing_ok=True)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        lines = records.assign(reason=REASONS[reason]).to_json(
            orient="records", lines=True, date_format="iso"
        )
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(lines if lines.endswith("\n") else lines + "\n")
        tmp.replace(path)  # readers see the old file or the new one
        done[reason] = {"records": len(records), "path": str(path)}
    if done:
        log(logger, "experiment: records set aside", **{k: v["records"] for k, v in done.items()})
    return done


def strict(value: Any) -> Any:
    """``value`` with every float that is not finite as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
