"""A shop's own log, end to end: written as the shop's files, imported by `dvc repro`, served.

The log looks like a real ratings export: epoch-second timestamps, ratings instead of
clicks, no queries, positions or propensities, profile and item side columns, one item
without a listing date and a few broken rows.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from shoprank.privacy import pseudonym
from tests.test_dvc import _dvc, _repo_copy

pytestmark = [pytest.mark.slow, pytest.mark.integration]
DAY = 86_400
START = 1_717_200_000  # 2024-06-01


def shop_files(folder, seed: int = 0) -> None:
    """ratings.csv, items.csv, users.csv as a shop would export them."""
    rng = np.random.default_rng(seed)
    n_items, n_users = 80, 60
    quality = rng.normal(0, 1, n_items)
    genre = rng.integers(0, 3, n_items)
    items = pd.DataFrame(
        {
            "sku": np.arange(1, n_items + 1),
            "name": [f"{['Trail', 'Road', 'Kids'][g]} shoe model {i}" for i, g in enumerate(genre)],
            "listed": [f"{d:02d}-May-2024" for d in rng.integers(1, 28, n_items)],
            "Trail": (genre == 0).astype(int),
            "Road": (genre == 1).astype(int),
            "Kids": (genre == 2).astype(int),
            "weight_g": rng.integers(200, 400, n_items),
        }
    )
    items.loc[3, "listed"] = None  # no listing date: listed when first rated
    users = pd.DataFrame(
        {
            "uid": np.arange(1, n_users + 1),
            "age": rng.integers(18, 70, n_users),
            "segment": rng.choice(["runner", "casual", "parent"], n_users),
        }
    )
    likes = {"runner": 0, "casual": 1, "parent": 2}
    rows = []
    for u in range(n_users):
        taste = likes[users.loc[u, "segment"]]
        t = START + int(rng.integers(0, 20 * DAY))
        for _ in range(int(rng.integers(2, 6))):  # sessions
            for i in rng.choice(n_items, int(rng.integers(3, 12)), replace=False):
                score = quality[i] + 1.5 * (genre[i] == taste) + rng.normal(0, 0.8)
                stars = int(np.clip(np.round(3 + score), 1, 5))
                rows.append((u + 1, i + 1, stars, t, ["web", "app"][int(rng.integers(0, 2))]))
                t += int(rng.integers(20, 200))
            t += int(rng.integers(DAY // 2, 3 * DAY))
    ratings = pd.DataFrame(rows, columns=["uid", "sku", "stars", "epoch", "platform"]).astype(object)
    broken = [
        (1, 999, 4, START, "web"),
        (2, 5, "five", START + 60, "app"),
        (3, 7, 4, START + 10 * 365 * DAY, "web"),
    ]
    ratings = pd.concat([ratings, pd.DataFrame(broken, columns=ratings.columns)], ignore_index=True)
    ratings.to_csv(folder / "ratings.csv", index=False)
    items.to_csv(folder / "items.csv", index=False)
    users.to_csv(folder / "users.csv", index=False)


def import_params(raw: dict) -> dict:
    raw["data"] = {
        "source": "import",
        "columns": {
            "users": {"age": "numeric", "segment": "categorical"},
            "catalog": {"weight_g": "numeric"},
            "impressions": {"platform": "categorical"},
        },
    }
    raw["import"] = {
        "dir": "data/import",
        "format": "auto",
        "tables": {
            "impressions": {
                "file": "ratings.csv",
                "columns": {"user_id": "uid", "item_id": "sku", "ts": "epoch"},
                "timestamps": {"ts": {"unit": "s"}},
                "click": {"column": "stars", "min": 4},
                "constants": {"query": "", "position": 1},
                "request_id": {"session_gap_minutes": 30},
                "invalid_rows": "drop",
            },
            "catalog": {
                "file": "items.csv",
                "columns": {"item_id": "sku", "title": "name", "created_at": "listed"},
                "timestamps": {"created_at": {"format": "%d-%b-%Y"}},
                "labels": {"category": {"columns": ["Trail", "Road", "Kids"], "sep": ", "}},
                "template": {"description": "{title}. {category}"},
                "constants": {"brand": "", "price": 1.0, "attributes": "{}"},
                "defaults": {"created_at": "first_seen"},
            },
            "users": {
                "file": "users.csv",
                "columns": {"user_id": "uid"},
                "defaults": {"created_at": "first_seen"},
            },
        },
    }
    raw["validate"]["max_ctr"] = 0.9
    raw["train"]["candidates"] = {
        name: raw["train"]["candidates"][name] for name in ("bert_ctr", "lightgbm", "popularity", "cf")
    }
    return raw


def test_dvc_repro_runs_on_an_imported_log_and_the_service_answers_for_its_users(tmp_path, monkeypatch):
    repo = _repo_copy(tmp_path)
    shop_files(repo / "data" / "import")
    raw = import_params(yaml.safe_load((repo / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    out = _dvc(repo, "repro")
    assert "Running stage 'raw'" in out

    report = json.loads((repo / "data/raw/import_report.json").read_text())
    dropped = report["tables"]["impressions"]["rows_dropped"]
    assert dropped == 3, report["tables"]["impressions"]  # unknown item, unreadable rating, a future time
    assert report["tables"]["catalog"]["repaired"]["created_at <- first_seen"] == 1
    assert not (repo / "data/raw/truth").exists()

    metrics = json.loads(
        (repo / "metrics/evaluate.json").read_text(), parse_constant=lambda c: pytest.fail(f"not JSON: {c}")
    )
    assert {"snips_ctr", "auc_over_oracle"} <= set(metrics["not_computed"])
    for name, m in metrics["candidates"].items():
        assert m["auc"] > 0.55, (name, m)
    champion = json.loads((repo / "models/champion.json").read_text())
    assert champion["candidate"] in metrics["candidates"]
    trained = pd.read_parquet(
        repo / "data/training/training_set.parquet", columns=["age", "weight_g", "platform"]
    )
    assert trained.notna().mean().min() > 0.9  # the shop's columns reach the training set

    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    monkeypatch.chdir(repo)  # the params' paths are relative to the project: its store, its feedback log
    params = load_params(repo / "params.yaml")
    bundles = sorted((tmp_path / "bentoml" / "models").glob("*/*/manifest.json"))
    ranker = Ranker(bundles[-1].parent, params)
    scorer = ranker.scoring.scorer
    spec = scorer.pre.spec if hasattr(scorer, "pre") else scorer.spec
    if champion["candidate"] != "popularity":  # the shop's columns are inputs of the champion
        assert {"age", "segment", "weight_g", "platform"} <= {*spec.numeric, *spec.categorical}
    items = [str(i) for i in range(1, 21)]
    ranked = ranker.rank("", "7", items, explain_top=3, context={"platform": "app"}, shown=20)
    assert sorted(ranked["order"]) == sorted(items) and ranked["user_known"]
    scores = [r["score"] for r in ranked["results"]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1

    feed = ranker.recommend("7", k=10, context={"platform": "web"})
    known = set(pd.read_csv(repo / "data/import/items.csv")["sku"].astype(str))
    assert len(feed["results"]) == 10 and {r["item_id"] for r in feed["results"]} <= known
    found_by = {s for r in feed["results"] for s in r["retrieval"]["sources"]}
    assert {"co_clicked", "collaborative"} <= found_by  # from its own clicks, and the learned factors
    cold = ranker.recommend("a-shopper-never-seen", k=5)
    assert len(cold["results"]) == 5
    top = feed["results"][0]
    ranker.record_feedback(feed["request_id"], top["item_id"], "click", top["feedback_token"])
    ranker.stop_refresh()

    # the service's own log flows back: ingested beside the imported batch, validated, trained on
    again = _dvc(repo, "repro")
    assert "Running stage 'ingest-feedback'" in again and "Running stage 'train@lightgbm'" in again
    ingested = pd.read_parquet(repo / "data/feedback/impressions.parquet")
    assert len(ingested) == 20 + 10 + 5 and ingested["clicked"].sum() == 1
    platform = ingested.groupby("request_id")["platform"].agg(lambda v: set(v))  # the request's context
    assert platform[ranked["request_id"]] == {"app"} and platform[feed["request_id"]] == {"web"}
    # a shopper the batch does not know signed up since: kept, and listed beside the batch's users
    report = json.loads((repo / "data/feedback/ingested.json").read_text())
    assert report["quarantined"] == 0 and report["new_shoppers"] == 1
    assert ingested.loc[ingested["request_id"] == cold["request_id"], "item_id"].tolist() == [
        r["item_id"] for r in cold["results"]
    ]
    current = (repo / "data/validated/CURRENT").read_text().strip()
    users = pd.read_parquet(repo / "data/validated" / current / "users.parquet")
    assert (users["user_id"] == pseudonym("a-shopper-never-seen", ranker.pseudonym_key)).sum() == 1

    # a broken export (no rating reaches the click rule) stops at the first stage: the champion stays
    champion_before = (repo / "models/champion.json").read_text()
    ratings = pd.read_csv(repo / "data/import/ratings.csv")
    ratings.assign(stars=1).to_csv(repo / "data/import/ratings.csv", index=False)
    failed = _dvc(repo, "repro", fails=True)
    assert "no clicks" in failed and "Running stage 'train@lightgbm'" not in failed
    assert (repo / "models/champion.json").read_text() == champion_before
    served = Ranker(bundles[-1].parent, params)
    assert sorted(served.rank("", "7", items)["order"]) == sorted(items)  # still served
    served.stop_refresh()
