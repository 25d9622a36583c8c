"""The columns a shop brings (data.columns): declared in params, checked, stored and read by the models."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic_core import PydanticCustomError

from shoprank.config import ParamsError, load_params
from shoprank.features.batch import read_batch
from shoprank.features.items import item_profile
from shoprank.features.store import copy_repo, definitions_digest, load_definitions
from shoprank.features.users import user_profile
from shoprank.inputs import declare
from shoprank.models.preprocess import feature_spec
from shoprank.quality import ValidationFailed, validate_batch
from shoprank.ranking.requests import check_context
from tests.conftest import ROOT
from tests.feature_helpers import _hand_batch

COLUMNS = {
    "users": {"age": "numeric", "segment": "categorical"},
    "catalog": {"weight_g": "numeric"},
    "impressions": {"platform": "categorical"},
}


def shop_params(tmp_path, columns=COLUMNS, windows=(1, 7, 28, "all")):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["columns"] = columns
    raw["features"]["windows_days"] = list(windows)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


def test_declared_columns_become_inputs_of_every_feature_candidate(tmp_path):
    shop_params(tmp_path)
    assert declare.by_name("age").view == "user_profile" and declare.by_name("age").entity == "user"
    assert declare.by_name("weight_g").view == "item_profile"
    assert declare.by_name("platform").entity == "request" and declare.request_columns() == ["platform"]
    columns = ["item_id", "query", "age", "segment", "weight_g", "platform", "item_ctr_all", "item_ctr_7d"]
    for candidate in ("bert_ctr", "no_text", "lightgbm"):
        spec = feature_spec(columns, candidate)
        assert {"age", "weight_g", "item_ctr_all", "item_ctr_7d"} <= set(spec.numeric)
        assert {"segment", "platform"} <= set(spec.categorical)
    assert "`age`" not in declare.markdown()  # the docs table lists shoprank's own inputs only


def test_other_params_replace_the_declared_columns(tmp_path):
    shop_params(tmp_path)
    shop_params(tmp_path, columns={"users": {"income": "numeric"}}, windows=(7,))
    assert [x.name for x in declare.SHOP] == ["income"]
    with pytest.raises(KeyError):
        declare.by_name("age")
    assert {x.name for x in declare.windowed("item_stats")} == {
        "item_impressions_7d",
        "item_ctr_7d",
        "item_coec_7d",
    }


@pytest.mark.parametrize(
    ("columns", "windows", "needle"),
    [
        ({"catalog": {"colour": "categorical"}}, (7,), "an input of shoprank's has that name"),
        ({"orders": {"x": "numeric"}}, (7,), "unknown table"),
        ({"users": {"age": "number"}}, (7,), "data.columns"),
        ({}, (7, 7), "distinct windows"),
        ({}, (0,), "distinct windows"),
    ],
)
def test_bad_declarations_fail_when_params_load(tmp_path, columns, windows, needle):
    with pytest.raises(ParamsError, match=needle):
        shop_params(tmp_path, columns=columns, windows=windows)


def test_feature_views_take_windows_and_shop_columns_from_params(tmp_path):
    repo = copy_repo(ROOT / "features", tmp_path)
    shop_params(tmp_path)
    before = definitions_digest(repo)
    views = {o.name: o for o in load_definitions(repo) if hasattr(o, "features") and hasattr(o, "entities")}
    fields = {v: {f.name: str(f.dtype) for f in views[v].features} for v in views}
    assert {"item_ctr_all", "item_impressions_all", "item_coec_all", "item_ctr_28d"} <= set(
        fields["item_stats"]
    )
    assert {"user_ctr_all", "user_impressions_all"} <= set(fields["user_stats"])
    assert "Float32" in fields["user_profile"]["age"] and "String" in fields["user_profile"]["segment"]
    assert "weight_g" in fields["item_profile"]
    assert "platform" not in {f for v in fields.values() for f in v}  # the request's own value
    shop_params(tmp_path, columns={}, windows=(1,))
    assert definitions_digest(repo) != before  # a change in params re-applies the repository
    views = {o.name: o for o in load_definitions(repo) if hasattr(o, "features") and hasattr(o, "entities")}
    assert {f.name for f in views["item_stats"].features} >= {"item_ctr_1d"}
    assert "item_ctr_all" not in {f.name for f in views["item_stats"].features}


def test_profile_tables_carry_the_shop_columns_typed(tmp_path):
    shop_params(tmp_path)
    folder = _hand_batch(tmp_path / "batch")
    users = pd.read_parquet(folder / "users.parquet").assign(age=[34, None], segment=["runner", None])
    users.to_parquet(folder / "users.parquet", index=False)
    batch = read_batch(folder)  # the catalog has no weight_g: all null, the view's type kept
    u = user_profile(batch).set_index("user_id")
    assert u["age"].dtype == np.float32 and u.loc["U", "age"] == 34 and np.isnan(u.loc["V", "age"])
    assert u.loc["U", "segment"] == "runner" and pd.isna(u.loc["V", "segment"])
    items = item_profile(batch)
    assert items["weight_g"].dtype == np.float32 and items["weight_g"].isna().all()


def _batch_with_users(tiny_batch, tmp_path, edit):
    out = tmp_path / "raw"
    shutil.copytree(tiny_batch, out, ignore=shutil.ignore_patterns("truth"))
    users = pd.read_parquet(out / "users.parquet")
    edit(users).to_parquet(out / "users.parquet", index=False)
    return out


def test_great_expectations_checks_the_declared_columns(tiny_batch, tmp_path):
    params = shop_params(tmp_path, columns={"users": {"age": "numeric"}})
    ages = lambda u: u.assign(age=np.arange(len(u)) % 60 + 18.0)  # noqa: E731
    good = _batch_with_users(tiny_batch, tmp_path / "good", ages)
    report = validate_batch(good, params.validate_, tmp_path / "v", tmp_path / "q")
    assert report.success
    text = lambda u: ages(u).assign(age="forty")  # noqa: E731
    for name, edit in (("text", text), ("missing", lambda u: u)):
        bad = _batch_with_users(tiny_batch, tmp_path / name, edit)
        with pytest.raises(ValidationFailed, match="age") as info:
            validate_batch(bad, params.validate_, tmp_path / f"v_{name}", tmp_path / f"q_{name}")
        assert (tmp_path / f"q_{name}" / info.value.report.batch_id).is_dir()  # quarantined, not lost


def test_request_context_names_declared_impression_columns_only(tmp_path):
    shop_params(tmp_path, columns={"impressions": {"platform": "categorical", "hour": "numeric"}})
    assert check_context({"platform": "app", "hour": 9}) == {"platform": "app", "hour": 9}
    with pytest.raises(PydanticCustomError, match="unknown context key"):
        check_context({"plattform": "app"})
    with pytest.raises(PydanticCustomError, match="numeric"):
        check_context({"hour": "nine"})
    with pytest.raises(PydanticCustomError, match="categorical"):
        check_context({"platform": 3})


def test_frequent_ids_get_their_own_code_and_rare_or_unseen_ids_share_one():
    from shoprank.inputs.frame import Frame
    from shoprank.models.preprocess import Preprocessor

    columns = ["item_id", "user_id", "query", "position", "clicked", "item_ctr_7d"]
    spec = feature_spec(columns, "bert_ctr")
    assert spec.ids == ("item_id", "user_id") and set(spec.ids) <= set(spec.categorical)
    assert not set(feature_spec(columns, "lightgbm").categorical) & {"item_id", "user_id"}
    df = pd.DataFrame(
        {
            "item_id": ["a"] * 5 + ["b"] * 4 + ["c"],
            "user_id": ["u"] * 10,
            "query": "",
            "position": 1,
            "clicked": 0,
            "item_ctr_7d": 0.1,
        }
    )
    pre = Preprocessor(spec, id_min_count=4).fit(df, ["a", "b", "c"])
    probe = df.iloc[[0, 5, 9, 9]].reset_index(drop=True)
    probe.loc[3, "item_id"] = "never-seen"
    codes = pre.transform(Frame(probe, {}), history_length=2)["cat"][:, spec.categorical.index("item_id")]
    assert codes[0] != codes[1] and min(codes[:2]) > 0  # a and b: their own rows
    assert codes[2] == codes[3] == 0  # c (once) and an unseen id: the shared row
