"""Attribute filling: heads learned from the catalogue's own fields fill its gaps (models/attributes.py).

On a small synthetic catalogue whose texts name the colour, so no text encoder is needed:
what is filled and what stays missing, that held-out scores come from items left out of
the fit, that the filled values reach the derived inputs, and that answers mark them inferred.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from shoprank.config import Understand, load_params
from shoprank.models import attributes
from shoprank.models.attributes import fill_catalogue, fill_missing, filled_of
from tests.conftest import ROOT

COLOURS = ("red", "blue", "green")
DIM = 8
NOW = pd.Timestamp("2025-06-01", tz="UTC")


def catalogue(n: int = 90) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Items whose text names their colour; every fourth item's colour field is empty.

    item_1 (blue) has an empty field and a text that names blue; item_nameless has an
    empty field and a text that names no colour. The embeddings are noise.
    """
    ids = [f"item_{i}" for i in range(n)]
    colour = [COLOURS[i % 3] for i in range(n)]
    texts = [f"Trail tent {i}, {c}. Sleeps two." for i, c in enumerate(colour)]
    ids.append("item_nameless")
    texts.append("Trail tent, sleeps two.")
    field = np.array([None if i % 4 == 1 else c for i, c in enumerate(colour)] + [None], dtype=object)
    vecs = np.random.default_rng(0).normal(size=(len(ids), DIM)).astype(np.float32)
    return ids, vecs, texts, field


def settings(**fill) -> Understand:
    return Understand(fill={"columns": ["colour"], "min_confidence": 0.8, **fill})


def test_a_named_colour_is_filled_and_an_unsure_item_stays_missing():
    ids, vecs, texts, field = catalogue()
    table, report = fill_catalogue(ids, vecs, texts, {"colour": field}, settings())
    filled = filled_of(table)["colour"]
    assert filled["item_1"] == "blue"  # its field is empty, its text says blue
    assert "item_nameless" not in filled.index  # no colour in its text: below the confidence threshold
    assert not set(filled.index) & {i for i, f in zip(ids, field, strict=True) if f is not None}
    r = report["colour"]
    assert r["method"] in ("words", "both")  # the embeddings are noise: the words win on validation
    assert r["held_out"]["accuracy"] == 1.0 and r["held_out"]["macro_f1"] == 1.0
    missing = int(sum(f is None for f in field))
    assert r["missing"] == missing and r["filled"] == missing - 1
    assert r["filled_share"] == round((missing - 1) / missing, 4)
    # the threshold is a setting: at 1.0 nothing is sure enough
    table, report = fill_catalogue(ids, vecs, texts, {"colour": field}, settings(min_confidence=1.0))
    assert table.empty and report["colour"]["filled"] == 0


def test_held_out_scores_are_of_items_left_out_of_the_fit(monkeypatch):
    ids, vecs, texts, field = catalogue()
    fitted: list[set[str]] = []
    scored: list[set[str]] = []
    fit_head, scores = attributes.fit_head, attributes.scores

    def recording_fit(name, method, v, t, labels, s):
        fitted.append(set(t))
        return fit_head(name, method, v, t, labels, s)

    def recording_scores(head, v, t, labels, threshold):
        scored.append(set(t))
        fitted_with = fitted[-1]
        assert not set(t) & fitted_with, "a held-out item was in the fit"
        return scores(head, v, t, labels, threshold)

    monkeypatch.setattr(attributes, "fit_head", recording_fit)
    monkeypatch.setattr(attributes, "scores", recording_scores)
    _, report = fill_catalogue(ids, vecs, texts, {"colour": field}, settings(method="words"))
    known = {t for t, f in zip(texts, field, strict=True) if f is not None}
    (held,) = scored
    assert held and held <= known  # only items whose field is known are scored
    assert len(held) == report["colour"]["rows"]["held_out"]
    assert fitted[0] == known - held  # the scored head: fitted on the other known items
    assert fitted[-1] == known  # the head that fills: fitted on every known item


def test_filled_values_never_replace_the_catalogues_and_reach_the_query_match():
    from shoprank.inputs.apply import derive

    filled = {"colour": pd.Series({"a": "blue", "b": "green"}), "size": pd.Series(dtype=object)}
    df = pd.DataFrame({
        "item_id": ["a", "b", "c", "a"],
        "query": ["blue tent", "green tent", "red tent", "red tent"],
        "colour": pd.array([None, "red", None, None], dtype="string"),
        "brand": ["x", "y", "z", "x"],
        "material": ["", "", "", ""],
        "size": pd.array([None] * 4, dtype="string"),
    })  # fmt: skip
    before = derive(df.copy(), ["query_colour_match"])["query_colour_match"].tolist()
    out = derive(df, ["query_colour_match"], filled=filled)
    assert out["colour"].tolist()[:3] == ["blue", "red", pd.NA] and out["colour"].dtype == "string"
    assert before == [0, 0, 0, 0]
    assert out["query_colour_match"].tolist() == [1, 0, 0, 0]  # "b" keeps its own red: not green
    assert fill_missing(df.copy(), None).equals(df)
    categories = pd.DataFrame({"item_id": ["a", "b"], "colour": pd.Categorical([None, "red"])})
    assert fill_missing(categories, filled)["colour"].tolist() == ["blue", "red"]  # a new category too


def items_table() -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": ["a", "b"],
        "title": ["Blue tent", "Red boot"],
        "description": ["", ""],
        "created_at": [NOW, NOW],
        "category": ["outdoor > tents", "outdoor > boots"],
        "brand": ["acme", "acme"],
        "price": [50.0, 80.0],
        "colour": pd.array([None, "red"], dtype="string"),
        "material": pd.array([None, None], dtype="string"),
        "size": pd.array([None, "42"], dtype="string"),
    })  # fmt: skip


def test_answers_carry_filled_attributes_marked_inferred():
    from shoprank.ranking import responses
    from shoprank.ranking.catalog import Catalog

    filled = {"colour": pd.Series({"a": "blue"}), "material": pd.Series(dtype=object)}
    catalog = Catalog.build(items_table(), pd.DataFrame({"user_id": []}), np.zeros((2, 4)), filled)
    results = responses.ranked(catalog, np.array([0, 1]), np.array([0.2, 0.1]), np.array([0, 1]), None)
    assert results[0]["attributes"] == {
        "colour": {"value": "blue", "inferred": True},
        "brand": {"value": "acme", "inferred": False},
    }
    assert results[1]["attributes"]["colour"] == {"value": "red", "inferred": False}
    assert results[1]["attributes"]["size"] == {"value": "42", "inferred": False}
    plain = Catalog.build(items_table(), pd.DataFrame({"user_id": []}), np.zeros((2, 4)))
    assert "colour" not in plain.attributes(0)  # nothing filled: a missing field stays absent


def test_understand_writes_the_filled_table_and_its_held_out_scores(tmp_path):
    """The step on files: the item profile's fields and the validated catalogue's texts."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(tmp_path / v) for k, v in raw["paths"].items()}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    p = load_params(params_file)
    features, batch = Path(p.paths.features), Path(p.paths.validated) / "b1"
    features.mkdir(parents=True)
    batch.mkdir(parents=True)
    (batch.parent / "CURRENT").write_text("b1\n")
    ids, vecs, texts, field = catalogue()
    table = {"item_id": ids, "event_timestamp": [NOW] * len(ids), "item_embedding": list(vecs)}
    pq.write_table(pa.table(table, schema=None), features / "item_text.parquet")
    profile = pd.DataFrame({"item_id": ids, "event_timestamp": NOW, "brand": "acme"})
    profile["colour"] = pd.array(field, dtype="string")
    profile.to_parquet(features / "item_profile.parquet")
    pd.DataFrame({"item_id": ids, "title": texts, "description": ""}).to_parquet(batch / "catalog.parquet")
    result = CliRunner().invoke(app, ["understand", "--params", str(params_file)])
    assert result.exit_code == 0, result.output
    filled = attributes.pipeline_filled(p.paths.models)
    assert filled is not None and filled["colour"]["item_1"] == "blue"
    metrics = json.loads((Path(p.paths.metrics) / "understand.json").read_text())["filled"]
    assert metrics["colour"]["accuracy"] == 1.0 and metrics["colour"]["filled_share"] > 0.9
    assert metrics["brand"] == {"trained": False}  # one brand: nothing to learn
    assert metrics["material"] == {"trained": False}  # not a column of this catalogue
    assert "colour" in result.output and "filled" in result.output


@pytest.mark.parametrize("column", ["colour", "material", "size", "brand"])
def test_every_filled_column_is_an_item_input_with_a_query_match(column):
    from shoprank.inputs.declare import by_name

    assert by_name(column).entity == "item" and by_name(f"query_{column}_match").derive
    assert column in Understand().fill.columns


def test_the_openapi_document_describes_inferred_attributes():
    from starlette.testclient import TestClient

    from shoprank.config import Serve
    from tests.test_serving_http import _app

    doc = TestClient(_app(key="", settings=Serve())).get("/openapi.json").json()
    attribute = doc["components"]["schemas"]["Attributes"]["additionalProperties"]
    assert set(attribute["required"]) == {"value", "inferred"}
    for path in ("/search", "/recommend", "/rank"):
        answer = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        result = answer["properties"]["results"]["items"]["properties"]
        assert result["attributes"] == {"$ref": "#/components/schemas/Attributes"}
    intent = doc["paths"]["/intent"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "results" not in intent.get("properties", {})
