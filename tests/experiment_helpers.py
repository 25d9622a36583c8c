"""Synthetic feedback logs of online experiments with known click rates (A/B and interleaving)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from shoprank.config import Params, parse_params
from shoprank.feedback.log import FeedbackLog
from tests.conftest import ROOT

START = datetime(2025, 6, 1, tzinfo=UTC)
CONTROL = {"name": "control", "model": "champion", "share": 0.5}
TREATMENT = {"name": "treatment", "model": "lightgbm", "share": 0.5}


def experiment_params(root: Path, **experiment: Any) -> Params:
    """params.yaml with every path under ``root`` and this experiment (default: control vs treatment)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(root / v) for k, v in raw["paths"].items()}
    if experiment.get("name", "exp1"):
        raw["experiment"] = {"name": "exp1", "arms": [CONTROL, TREATMENT], **experiment}
    return parse_params(raw)


def write_params(root: Path, params: Params) -> Path:
    """``params`` as a params file the CLI reads (``--params``)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(v) for k, v in params.paths.model_dump().items()}
    raw["experiment"] = params.experiment.model_dump()
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def ab_records(
    ctr: dict[str, float],
    requests: int,
    seed: int,
    shares: dict[str, float] | None = None,
    items: int = 5,
    users: int | None = None,
    purchase_rate: float = 0.0,
    experiment: str = "exp1",
) -> list[dict[str, Any]]:
    """Served, click and purchase records of an A/B test: each user is drawn one arm by ``shares``
    (default equal), each served item clicked with its arm's ``ctr``, a click bought with
    ``purchase_rate``. Request ``r`` is at START + r seconds; users: one per request by default."""
    rng = np.random.default_rng(seed)
    names = list(ctr)
    weights = np.array([(shares or {}).get(a, 1.0) for a in names])
    weights = weights / weights.sum()
    users = users or requests
    arm_of = rng.choice(len(names), size=users, p=weights)
    out: list[dict[str, Any]] = []
    for r in range(requests):
        user = int(rng.integers(users)) if users != requests else r
        arm = names[arm_of[user]]
        ts = (START + timedelta(seconds=r)).isoformat()
        for pos in range(1, items + 1):
            base = {"request_id": f"{experiment}-r{r}", "item_id": f"i{pos}", "position": pos, "ts": ts}
            out.append(base | {"event": "served", "user_id": f"u{user}", "experiment": experiment, "arm": arm,
                               "propensity": 1.0})  # fmt: skip
            if rng.random() < ctr[arm]:
                out.append(base | {"event": "click"})
                if rng.random() < purchase_rate:
                    out.append(base | {"event": "purchase"})
    return out


def interleave_records(
    ctr: dict[str, float], requests: int, seed: int, items: int = 6, experiment: str = "exp1"
) -> list[dict[str, Any]]:
    """Interleaved pages: positions alternate between the two teams (the first pick drawn per
    request), each item clicked with its team's ``ctr``."""
    rng = np.random.default_rng(seed)
    a, b = list(ctr)
    out: list[dict[str, Any]] = []
    for r in range(requests):
        first = rng.random() < 0.5
        ts = (START + timedelta(seconds=r)).isoformat()
        for pos in range(1, items + 1):
            team = a if (pos % 2 == 1) == first else b
            base = {"request_id": f"{experiment}-r{r}", "item_id": f"i{pos}", "position": pos, "ts": ts}
            out.append(base | {"event": "served", "user_id": f"u{r}", "experiment": experiment, "arm": team,
                               "propensity": 0.5})  # fmt: skip
            if rng.random() < ctr[team]:
                out.append(base | {"event": "click"})
    return out


def write_log(params: Params, records: list[dict[str, Any]]) -> FeedbackLog:
    feedback = FeedbackLog(params.paths.feedback)
    feedback.append(records, now=START)
    return feedback
