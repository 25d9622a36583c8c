"""`shoprank understand`: the query-understanding heads are their own step, and `package` ships them.

On small synthetic features whose embeddings carry the labels, so no text encoder is needed.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from shoprank.config import load_params
from tests.conftest import ROOT

runner = CliRunner()
DIM = 16
INTENTS = ("buy", "browse", "compare", "price", "learn")
TYPES, COLOURS, MATERIALS = ("tent", "boot", "jacket"), ("red", "blue"), ("wool", "nylon")
NOW = pd.Timestamp("2025-06-01", tz="UTC")


def _vectors(rng: np.random.Generator, hot: list[list[int]]) -> pa.Array:
    """One row per entry of ``hot``: noise plus 3.0 in each listed dimension."""
    out = rng.normal(0, 0.3, (len(hot), DIM)).astype(np.float32)
    for row, dims in enumerate(hot):
        out[row, dims] += 3.0
    return pa.array(list(out), type=pa.list_(pa.float32()))


def write_queries(truth: Path, features: Path, rng: np.random.Generator) -> None:
    """Labelled search requests (some texts repeated, plus feeds) and each query text's embedding."""
    texts = [f"{intent} query {i}" for intent in INTENTS for i in range(12)]
    intents = [t.split()[0] for t in texts]
    rows = [(t.upper(), i) for t, i in zip(texts, intents, strict=True) for _ in range(1 + len(t) % 3)]
    rows += [("", "browse")] * 5  # recommendation feeds: no query, not labelled data
    pd.DataFrame(rows, columns=["query", "intent"]).to_parquet(truth / "requests.parquet")
    hot = [[8 + INTENTS.index(i)] for i in intents]
    table = pa.table({"query_text": texts, "query_embedding": _vectors(rng, hot)})
    pq.write_table(table, features / "query_text.parquet")


def write_items(truth: Path, features: Path, batch: Path, rng: np.random.Generator, n: int = 60) -> None:
    """Item labels and embeddings, the item feature tables and the validated catalog `package` reads."""
    items = pd.DataFrame({
        "item_id": [f"item_{i}" for i in range(n)],
        "product_type": [TYPES[i % 3] for i in range(n)],
        "colour": [COLOURS[i % 2] for i in range(n)],
        "material": [None if i % 5 == 0 else MATERIALS[(i // 2) % 2] for i in range(n)],
    })  # fmt: skip
    items.to_parquet(truth / "items.parquet")
    hot = [[TYPES.index(t), 3 + COLOURS.index(c)] for t, c in items[["product_type", "colour"]].to_numpy()]
    vectors = {
        "item_id": items["item_id"],
        "event_timestamp": [NOW] * n,
        "item_embedding": _vectors(rng, hot),
    }
    pq.write_table(pa.table(vectors), features / "item_text.parquet")
    ids = items[["item_id"]].assign(event_timestamp=NOW)
    ids.assign(category="outdoor", brand="acme").to_parquet(features / "item_profile.parquet")
    ids.assign(item_ctr_7d=0.05).to_parquet(features / "item_stats.parquet")
    batch.mkdir(parents=True)
    catalog = items.assign(title=items["product_type"], description="", created_at=NOW)
    catalog[["item_id", "title", "description", "created_at"]].to_parquet(batch / "catalog.parquet")
    shown = {"user_id": "u1", "ts": NOW, "position": [1, 2], "item_id": ["item_0", "item_1"], "clicked": 1}
    pd.DataFrame(shown).to_parquet(batch / "impressions.parquet")  # the feeds' click tables read them
    (batch.parent / "CURRENT").write_text(batch.name + "\n")


def write_project(tmp: Path) -> Path:
    """A params file with every path under ``tmp``, and the truth, features and batch it points at."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(tmp / v) for k, v in raw["paths"].items()}
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    truth, features = Path(raw["paths"]["truth"]), Path(raw["paths"]["features"])
    truth.mkdir(parents=True)
    features.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_queries(truth, features, rng)
    write_items(truth, features, Path(raw["paths"]["validated"]) / "b1", rng)
    return params


@pytest.fixture
def project(tmp_path) -> Path:
    return write_project(tmp_path)


def understand(params: Path) -> str:
    result = runner.invoke(app, ["understand", "--params", str(params)])
    assert result.exit_code == 0, result.output
    return result.output


def test_understand_writes_the_heads_and_their_held_out_scores(project):
    from shoprank.models.understanding import load_understanding

    output = understand(project)
    p = load_params(project)
    folder = Path(p.paths.models) / "understanding"
    assert {f.name for f in folder.iterdir()} == {"understanding.pkl", "report.json"}
    model, report = load_understanding(p.paths.models)
    assert report["trained"] and report["embedding_dim"] == DIM
    assert report["rows"]["items"] == 60 and report["classes"]["intent"] == sorted(INTENTS)
    scores = report["scores"]  # of heads fitted without the held-out queries and items
    assert scores["intent"]["accuracy"] > 0.9 and scores["product_type"]["accuracy"] > 0.9
    assert set(scores) == {"intent", "product_type", "colour", "material"}
    metrics = json.loads((Path(p.paths.metrics) / "understand.json").read_text())
    assert {k: v for k, v in metrics.items() if k != "filled"} == scores
    assert set(metrics["filled"]) == set(p.understand.fill.columns)  # tests/test_attributes.py: the filling
    assert "held out" in output and f"{scores['intent']['accuracy']:.4f}" in output
    # the shipped heads are fitted on everything, with params.yaml's `understand` settings
    assert model is not None
    settings = (model.intent.model.C, model.attributes["colour"].model.max_iter)
    assert settings == (p.understand.c, p.understand.max_iter)
    probs, names = model.query_intent(np.eye(DIM, dtype=np.float32)[[8, 12]] * 3)
    assert [names[i] for i in probs.argmax(axis=1)] == ["buy", "learn"]


def test_understand_settings_come_from_params_yaml(project):
    raw = yaml.safe_load(project.read_text())
    raw["understand"].update({"c": 0.5, "max_iter": 50, "holdout_share": 0.5, "seed": 3})
    project.write_text(yaml.safe_dump(raw))
    understand(project)
    p = load_params(project)
    report = json.loads((Path(p.paths.models) / "understanding" / "report.json").read_text())
    assert report["settings"] == raw["understand"]
    with open(Path(p.paths.models) / "understanding" / "understanding.pkl", "rb") as fh:
        head = pickle.load(fh).intent.model
    assert (head.C, head.max_iter, head.random_state) == (0.5, 50, 3)


def test_understand_without_labels_records_why(project):
    from shoprank.models.understanding import load_understanding

    p = load_params(project)
    (Path(p.paths.truth) / "requests.parquet").unlink()
    output = understand(project)
    assert "no heads: no labelled queries" in output
    model, report = load_understanding(p.paths.models)
    assert model is None and not report["trained"] and "simulator truth" in report["reason"]
    metrics = json.loads((Path(p.paths.metrics) / "understand.json").read_text())
    assert metrics["trained"] is False and "filled" in metrics  # filling needs no labels


def test_understand_without_features_is_a_usage_error(project):
    p = load_params(project)
    (Path(p.paths.features) / "item_text.parquet").unlink()
    result = runner.invoke(app, ["understand", "--params", str(project)])
    assert result.exit_code == 2 and "run `shoprank features`" in result.output


def champion(models: Path) -> None:
    from shoprank.models.baselines import PopularityModel
    from shoprank.models.scorers import save
    from shoprank.selection import sha256_of

    artifact = save(PopularityModel(), models / "candidates" / "popularity.pt", "popularity")
    record = {"version": "v0001", "candidate": "popularity", "artifact": "candidates/popularity.pt",
              "sha256": sha256_of(artifact), "lineage": {"data_version": "b1"}}  # fmt: skip
    (models / "champion.json").write_text(json.dumps(record))


def test_package_ships_the_understand_artifact_and_needs_it(project, tmp_path):
    from shoprank.ranking.bundle import PackageError, build_bundle

    p = load_params(project)
    models = Path(p.paths.models)
    champion(models)
    with pytest.raises(PackageError, match="run `shoprank understand`"):
        build_bundle(p, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # nothing half-written

    understand(project)
    manifest = build_bundle(p, tmp_path / "bundle")
    report = json.loads((models / "understanding" / "report.json").read_text())
    assert manifest["understanding"] == report["scores"] and manifest["understanding_missing"] is None
    assert (manifest["recommend"]["clicks"], manifest["recommend"]["pairs"]) == (2, 2)  # item_0 <-> item_1
    with open(tmp_path / "bundle" / "understanding.pkl", "rb") as fh:
        shipped = pickle.load(fh)
    with open(models / "understanding" / "understanding.pkl", "rb") as fh:
        trained = pickle.load(fh)
    x = np.random.default_rng(1).normal(size=(7, DIM)).astype(np.float32)
    np.testing.assert_array_equal(shipped.query_intent(x)[0], trained.query_intent(x)[0])

    report["embedding_dim"] = DIM + 1  # heads of another encoder: package must not ship them
    (models / "understanding" / "report.json").write_text(json.dumps(report))
    with pytest.raises(PackageError, match="17-d embeddings"):
        build_bundle(p, tmp_path / "mismatch")


def test_package_without_labels_ships_no_heads_and_says_why(project, tmp_path):
    from shoprank.ranking.bundle import build_bundle

    p = load_params(project)
    champion(Path(p.paths.models))
    (Path(p.paths.truth) / "items.parquet").unlink()
    understand(project)
    manifest = build_bundle(p, tmp_path / "bundle")
    assert manifest["understanding"] is None and "simulator truth" in manifest["understanding_missing"]
    assert not (tmp_path / "bundle" / "understanding.pkl").exists()
