"""`shoprank drift`: PSI and Kolmogorov-Smirnov per input, the winner's scores, outcomes per day.

The statistics on synthetic samples; the step on a synthetic training set shaped like an
imported log (no queries, no purchases); the CLI on the tiny simulated pipeline.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from shoprank.config import Paths
from shoprank.models.scorers import save
from shoprank.monitoring.drift import (
    MISSING,
    OTHER,
    Thresholds,
    categorical_bins,
    categorical_drift,
    daily_outcomes,
    numeric_drift,
)
from shoprank.monitoring.step import run_drift
from tests.conftest import tiny_raw_params

runner = CliRunner()


@pytest.fixture
def limits(params) -> Thresholds:
    return Thresholds(params.drift.psi_warn, params.drift.psi_alert)


def test_a_shifted_numeric_input_alerts_and_an_unshifted_one_stays_ok(params, limits):
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    same = numeric_drift(ref, rng.normal(0, 1, 5000), params.drift.bins)
    shifted = numeric_drift(ref, rng.normal(1, 1, 5000), params.drift.bins)
    assert limits.status(same["psi"]) == "ok"
    assert shifted["psi"] > params.drift.psi_alert and limits.status(shifted["psi"]) == "alert"
    assert shifted["ks"] > same["ks"] and shifted["ks_pvalue"] < 0.001 < same["ks_pvalue"]


def test_a_shift_between_repeated_values_shows(params, limits):
    """A flag or a count repeats few values: moving rows from one to another is drift."""
    ref = np.r_[np.zeros(900), np.ones(100)]
    cur = np.r_[np.zeros(500), np.ones(500)]
    assert limits.status(numeric_drift(ref, cur, params.drift.bins)["psi"]) == "alert"
    constant = numeric_drift(np.full(100, 5.0), np.full(100, 7.0), params.drift.bins)
    assert limits.status(constant["psi"]) == "alert"


def test_new_categorical_values_land_in_other(params, limits):
    ref = pd.Series(["a"] * 50 + ["b"] * 30 + ["rare"] + [None] * 19)
    cur = pd.Series(["a"] * 20 + ["new", "newer"] * 40)
    r, c = categorical_bins(ref, cur, max_categories=2)
    assert list(r.index) == ["a", "b", OTHER, MISSING]
    assert r[OTHER] == 1 and r[MISSING] == 19  # the rarest reference value is other too
    assert c["a"] == 20 and c[OTHER] == 80 and c["b"] == 0
    drift = categorical_drift(ref, cur, max_categories=2)
    assert drift["other_share"]["current"] == pytest.approx(0.8)
    assert limits.status(drift["psi"]) == "alert"
    assert limits.status(categorical_drift(ref, ref.sample(frac=1, random_state=0), 2)["psi"]) == "ok"


def test_an_input_gone_missing_alerts_and_what_cannot_be_computed_is_null(params, limits):
    gone = numeric_drift(np.array([1.0, 2.0, 3.0]), np.array([np.nan, np.nan]), params.drift.bins)
    assert limits.status(gone["psi"]) == "alert" and gone["missing_share"]["current"] == 1.0
    assert gone["ks"] is None and gone["ks_pvalue"] is None and gone["current_mean"] is None
    empty = numeric_drift(np.array([1.0, 2.0]), np.array([]), params.drift.bins)
    assert empty["psi"] is None and limits.status(empty["psi"]) == "not_computed"
    json.dumps([gone, empty], allow_nan=False)


def test_outcomes_per_day_without_purchases():
    ts = pd.to_datetime(["2025-01-01 10:00", "2025-01-01 11:00", "2025-01-03 09:00"], utc=True)
    df = pd.DataFrame({"event_timestamp": ts, "clicked": [1, 0, 0]})
    days = daily_outcomes(df, ts[0])
    assert days["day"].tolist() == [0, 2] and days["ctr"].tolist() == [0.5, 0.0]
    assert "purchase_rate" not in days
    with_purchases = daily_outcomes(df.assign(purchased=[1, 0, 0]), ts[0])
    assert with_purchases["purchase_rate"].tolist() == [0.5, 0.0]


class PriceScorer:
    """A stand-in model whose score follows the log price."""

    def predict(self, frame, with_position: bool = False) -> np.ndarray:
        return 1 / (1 + np.exp(-frame.df["log_price"].to_numpy()))


def _imported_log(root, rows: int = 4000) -> None:
    """A training set like an imported feed's: no queries, no purchases; prices rise in the latest days."""
    rng = np.random.default_rng(1)
    ts = pd.Timestamp("2025-03-01", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 20, rows)), unit="D")
    late = ts >= ts[int(rows * 0.7)]
    df = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(rows)],
            "event_timestamp": ts,
            "user_id": rng.choice(["u1", "u2", "u3"], rows),
            "item_id": rng.choice(["i1", "i2", "i3", "i4"], rows),
            "query": "",
            "position": 1,
            "clicked": rng.binomial(1, 0.1, rows),
            "log_price": rng.normal(3, 0.5, rows) + np.where(late, 1.5, 0.0),
            "n_attributes": rng.poisson(3, rows).astype(float),
            "brand": np.where(
                late & (rng.uniform(size=rows) < 0.5), "newcomer", rng.choice(["x", "y"], rows)
            ),
        }
    )
    (root / "training").mkdir(parents=True)
    df.to_parquet(root / "training" / "training_set.parquet")
    (root / "metrics").mkdir()
    (root / "metrics" / "evaluate.json").write_text(json.dumps({"winner": "priced"}))
    save(PriceScorer(), root / "models" / "candidates" / "priced.pt", kind="priced")


def _params_under(params, root):
    paths = Paths(training=root / "training", metrics=root / "metrics", models=root / "models")
    return params.model_copy(update={"paths": paths})


def test_the_step_on_an_imported_log_reports_shifted_inputs_and_scores(params, tmp_path):
    _imported_log(tmp_path)
    report = run_drift(_params_under(params, tmp_path))
    written = json.loads((tmp_path / "metrics" / "drift.json").read_text())
    assert written == report
    json.dumps(report, allow_nan=False)
    # ids are not compared; derived inputs are (the query names the brand, matches the item's
    # words, has an intent: never, without queries)
    query_inputs = {"query_brand_match", "query_bm25", "query_word_overlap", "query_intent"}
    assert set(report["inputs"]) == {"log_price", "n_attributes", "brand", *query_inputs}
    for name in query_inputs:
        assert report["inputs"][name]["status"] == "ok", (name, report["inputs"][name])
    assert (
        report["inputs"]["query_brand_match"] | {"psi": 0.0, "status": "ok"}
        == report["inputs"]["query_brand_match"]
    )
    assert report["inputs"]["log_price"]["status"] == "alert"
    assert report["inputs"]["n_attributes"]["status"] == "ok"
    assert report["inputs"]["brand"]["status"] == "alert"
    assert report["scores"]["candidate"] == "priced" and report["scores"]["status"] == "alert"
    assert report["summary"]["alerts"] == 3 and report["summary"]["alerted"] == [
        "brand",
        "log_price",
        "score",
    ]
    assert "ctr" in report["current"] and "purchase_rate" not in report["current"]
    psi = pd.read_csv(tmp_path / "metrics" / "drift" / "psi.csv")
    assert set(psi["name"]) == {*report["inputs"], "score"}
    ref = pd.read_csv(tmp_path / "metrics" / "drift" / "outcomes" / "reference.csv")
    cur = pd.read_csv(tmp_path / "metrics" / "drift" / "outcomes" / "current.csv")
    assert ref["day"].min() == 0 and cur["day"].min() > ref["day"].max()  # the test split comes later
    assert ref["impressions"].sum() == report["reference"]["rows"]


def test_missing_inputs_fail_with_the_step_to_run(params, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_raw_params(tmp_path)))
    result = runner.invoke(app, ["drift", "--params", str(path)])
    assert result.exit_code == 2 and "run `shoprank training-set` first" in result.output
    _imported_log(tmp_path / "data")
    (tmp_path / "data" / "metrics" / "evaluate.json").unlink()
    with pytest.raises(FileNotFoundError, match="run `shoprank evaluate` first"):
        run_drift(_params_under(params, tmp_path / "data"))


@pytest.mark.slow
@pytest.mark.integration
def test_the_cli_step_on_the_tiny_pipeline_writes_its_metrics_and_plots(tmp_path):
    raw = tiny_raw_params(tmp_path)
    raw["train"]["candidates"] = {
        k: v for k, v in raw["train"]["candidates"].items() if k in {"lightgbm", "popularity"}
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    for name in (
        "simulate",
        "validate",
        "features",
        "materialize",
        "training-set",
        "train",
        "evaluate",
        "drift",
    ):
        result = runner.invoke(app, [name, "--params", str(path)])
        assert result.exit_code == 0, f"{name} failed:\n{result.output}"
    metrics = tmp_path / raw["paths"]["metrics"]
    report = json.loads((metrics / "drift.json").read_text())
    winner = json.loads((metrics / "evaluate.json").read_text())["winner"]
    assert report["scores"]["candidate"] == winner and report["scores"]["psi"] is not None
    assert {"log_price", "brand", "item_ctr_7d"} <= set(report["inputs"])
    assert {"ctr", "purchase_rate"} <= set(report["current"])
    for stats in report["inputs"].values():
        assert stats["status"] in {"ok", "warn", "alert"}
    assert report["summary"]["checked"] == len(report["inputs"]) + 1
    assert (metrics / "drift" / "psi.csv").is_file()
    assert {p.name for p in (metrics / "drift" / "outcomes").iterdir()} == {"reference.csv", "current.csv"}
