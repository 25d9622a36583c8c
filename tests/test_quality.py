"""The data quality gate on the tiny profile: what passes, what is quarantined, and why."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shoprank.data.schema import CATALOG, IMPRESSIONS, USERS, Column, TableSchema
from shoprank.quality import ValidationFailed, current_batch, validate_batch
from shoprank.quality.report import failures_from
from shoprank.quality.suites import Previous, table_expectations

TABLES = ("catalog", "users", "impressions")
NOW = pd.Timestamp("2026-06-01", tz="UTC")


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def settings(params):
    return params.validate_


@pytest.fixture
def roots(tmp_path) -> tuple[Path, Path]:
    return tmp_path / "validated", tmp_path / "quarantine"


@pytest.fixture
def make_batch(tiny_batch, tmp_path) -> Callable[..., Path]:
    """A copy of the tiny batch's contract tables, with one table changed by ``edit``."""

    def make(
        name: str,
        table: str | None = None,
        edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
        raw: Callable[[Path], None] | None = None,
    ) -> Path:
        out = tmp_path / "raw" / name
        out.mkdir(parents=True)
        for t in TABLES:
            shutil.copyfile(tiny_batch / f"{t}.parquet", out / f"{t}.parquet")
        if edit is not None:
            path = out / f"{table}.parquet"
            edit(pd.read_parquet(path)).to_parquet(path, index=False)
        if raw is not None:
            raw(out)
        return out

    return make


@pytest.mark.slow
def test_valid_batch_passes_unchanged_and_rerun_is_idempotent(tiny_batch, settings, roots):
    validated, quarantine = roots
    before = digests(tiny_batch)
    report = validate_batch(tiny_batch, settings, validated, quarantine)

    assert report.success and report.failures == [] and report.evaluated > 40
    dest = validated / report.batch_id
    assert report.destination == dest and current_batch(validated) == dest
    for t in TABLES:  # byte-identical copies, and only the contract tables
        assert (dest / f"{t}.parquet").read_bytes() == (tiny_batch / f"{t}.parquet").read_bytes()
    assert not (dest / "truth").exists()
    record = json.loads((dest / "validation.json").read_text())
    assert record["success"] is True and record["rows"]["impressions"] == report.rows["impressions"] > 0
    assert {s["suite_name"] for s in record["great_expectations"]} == {"files", "references", *TABLES}
    assert report.docs_index == dest / "data_docs" / "index.html" and report.docs_index.is_file()
    assert "impressions" in report.docs_index.read_text()
    assert not quarantine.exists()
    assert digests(tiny_batch) == before

    again = validate_batch(tiny_batch, settings, validated, quarantine)
    assert again.batch_id == report.batch_id and again.success
    assert {p.name for p in validated.iterdir()} == {
        "CURRENT",
        report.batch_id,
    }  # no duplicates, no leftovers
    assert digests(tiny_batch) == before


def _set(column: str, rows: list[int], value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        if value is None and df[column].dtype.kind in "fiu":
            df[column] = df[column].astype("float64")
        df.loc[rows, column] = value
        return df

    return edit


def _purchase_without_click(df: pd.DataFrame) -> pd.DataFrame:
    row = df.index[df["clicked"] == 0][0]
    df.loc[row, "purchased"] = 1
    return df


# name, table, edit of the DataFrame or of the folder, text the failure message must contain
CORRUPTIONS = [
    (
        "nulls",
        "catalog",
        _set("title", [1, 2], None),
        "catalog.title: title has no nulls [expect_column_values_to_not_be_null]",
    ),
    (
        "negative_price",
        "catalog",
        _set("price", [3], -5.0),
        "catalog.price: price > 0 [expect_column_values_to_be_between]",
    ),
    (
        "unknown_item_ids",
        "impressions",
        _set("item_id", [0, 25], "ghost_item"),
        "impressions.item_id: every impression's item_id is in catalog [expect_column_values_to_be_null]",
    ),
    (
        "unknown_user_ids",
        "impressions",
        _set("user_id", list(range(20)), "ghost_user"),
        "impressions.user_id: every impression's user_id is in users",
    ),
    (
        "duplicate_users",
        "users",
        lambda df: pd.concat([df, df.iloc[[7]]], ignore_index=True),
        "users.user_id: user_id is unique [expect_column_values_to_be_unique]",
    ),
    (
        "duplicate_impressions",
        "impressions",
        lambda df: pd.concat([df, df.iloc[[5]]], ignore_index=True),
        "impressions.request_id,item_id: request_id + item_id is unique "
        "[expect_compound_columns_to_be_unique]",
    ),
    (
        "price_as_text",
        "catalog",
        lambda df: df.assign(price=df["price"].astype(str)),
        "catalog.price: price is of type float [expect_column_values_to_be_in_type_list]",
    ),
    (
        "ts_as_text",
        "impressions",
        lambda df: df.assign(ts=df["ts"].astype(str)),
        "impressions.ts: ts is a UTC timestamp [expect_column_values_to_be_of_type]",
    ),
    (
        "zero_rows",
        "users",
        lambda df: df.iloc[:0],
        "users: users is not empty [expect_table_row_count_to_be_between]",
    ),
    (
        "purchase_without_click",
        "impressions",
        _purchase_without_click,
        "impressions.purchased: purchased implies clicked",
    ),
    (
        "position_past_page",
        "impressions",
        _set("position", [4], 21),
        "impressions.position: position >= 1 and <= 20",
    ),
    (
        "future_ts",
        "impressions",
        _set("ts", [9], pd.Timestamp("2099-01-01", tz="UTC")),
        "impressions.ts: ts not before 2000-01-01 and not in the future",
    ),
    (
        "listed_after_window",
        "catalog",
        _set("created_at", [0], pd.Timestamp("2026-03-01", tz="UTC")),
        "catalog.created_at: created_at not after the batch window",
    ),
]
FILE_CORRUPTIONS = [
    (
        "zero_byte_file",
        lambda d: (d / "impressions.parquet").write_bytes(b""),
        "impressions.parquet: zero-byte file",
    ),
    (
        "garbage_file",
        lambda d: (d / "users.parquet").write_bytes(b"PAR1 not really"),
        "users.parquet: unreadable Parquet",
    ),
    ("missing_file", lambda d: (d / "catalog.parquet").unlink(), "catalog.parquet: missing"),
]


def _assert_quarantined(
    batch: Path, before: dict, exc: ValidationFailed, validated: Path, quarantine: Path, expected: str
) -> None:
    report = exc.report
    assert not report.success and expected in str(exc)
    dest = quarantine / report.batch_id
    assert report.destination == dest
    tables = {name: h for name, h in before.items() if name.endswith(".parquet")}
    assert {name: h for name, h in digests(dest).items() if name in tables} == tables  # the batch, as it was
    record = json.loads((dest / "validation.json").read_text())
    assert record["success"] is False
    assert any(
        expected.split(": ", 1)[1].split(" [")[0] in f["check"] + f["detail"] for f in record["failures"]
    )
    assert (dest / "summary.txt").read_text().strip() == str(exc)
    assert (dest / "data_docs" / "index.html").is_file()
    assert not validated.exists()  # nothing reaches the validated folder
    assert digests(batch) == before  # the raw batch is never modified


@pytest.mark.parametrize(("name", "table", "edit", "expected"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_table_is_quarantined(make_batch, settings, roots, name, table, edit, expected):
    validated, quarantine = roots
    batch = make_batch(name, table, edit)
    before = digests(batch)
    with pytest.raises(ValidationFailed) as info:
        validate_batch(batch, settings, validated, quarantine)
    _assert_quarantined(batch, before, info.value, validated, quarantine, expected)


@pytest.mark.parametrize(
    ("name", "damage", "expected"), FILE_CORRUPTIONS, ids=[c[0] for c in FILE_CORRUPTIONS]
)
def test_bad_file_is_quarantined_without_a_traceback(make_batch, settings, roots, name, damage, expected):
    validated, quarantine = roots
    batch = make_batch(name, raw=damage)
    before = digests(batch)
    with pytest.raises(ValidationFailed) as info:
        validate_batch(batch, settings, validated, quarantine)
    assert "batch.file: contract files exist and are readable Parquet" in str(info.value)
    _assert_quarantined(batch, before, info.value, validated, quarantine, expected)


def test_quarantine_rerun_replaces_its_own_record(make_batch, settings, roots):
    validated, quarantine = roots
    batch = make_batch("rerun", raw=lambda d: (d / "users.parquet").write_bytes(b""))
    ids = set()
    for _ in range(2):
        with pytest.raises(ValidationFailed) as info:
            validate_batch(batch, settings, validated, quarantine)
        ids.add(info.value.report.batch_id)
    assert [p.name for p in quarantine.iterdir()] == list(ids)  # one batch, one folder


def test_ctr_out_of_bounds_fails_and_docs_go_to_docs_dir(make_batch, settings, roots, tmp_path):
    validated, quarantine = roots
    batch = make_batch("all_clicked", "impressions", lambda df: df.assign(clicked=df["clicked"] * 0 + 1))
    docs = tmp_path / "docs"
    with pytest.raises(ValidationFailed) as info:
        validate_batch(batch, settings, validated, quarantine, docs_dir=docs)
    assert "impressions.clicked: overall CTR in [0.001, 0.5] [expect_column_mean_to_be_between]" in str(
        info.value
    )
    assert "observed 1" in str(info.value)
    assert info.value.report.docs_index == docs / "index.html" and (docs / "index.html").is_file()
    assert "data docs: " + str(docs / "index.html") in str(info.value)

    strict = settings.model_copy(update={"min_ctr": 0.2})  # the bounds come from the settings
    with pytest.raises(ValidationFailed, match=r"overall CTR in \[0.2, 0.5\]"):
        validate_batch(make_batch("normal"), strict, validated, quarantine)


@pytest.mark.slow
def test_row_count_collapse_against_previous_batch(make_batch, settings, roots):
    validated, quarantine = roots
    first = validate_batch(make_batch("full"), settings, validated, quarantine)

    def keep(
        share: float,
    ) -> Callable[[pd.DataFrame], pd.DataFrame]:  # whole requests, spread over the window
        def edit(df: pd.DataFrame) -> pd.DataFrame:
            ids = df["request_id"].unique()
            kept = ids[np.random.default_rng(0).random(len(ids)) < share]
            return df[df["request_id"].isin(kept)]

        return edit

    smaller = validate_batch(make_batch("smaller", "impressions", keep(0.8)), settings, validated, quarantine)
    assert smaller.success and smaller.previous_batch == first.batch_id
    with pytest.raises(ValidationFailed) as info:
        validate_batch(make_batch("collapsed", "impressions", keep(0.3)), settings, validated, quarantine)
    n = smaller.rows["impressions"]
    assert (
        f"impressions: impressions rows >= 0.5 x the previous batch ({n:,} rows in {smaller.batch_id})"
        in str(info.value)
    )
    assert current_batch(validated).name == smaller.batch_id  # the failed batch did not become current


def test_missing_batch_folder_is_an_error_not_a_quarantine(settings, roots, tmp_path):
    validated, quarantine = roots
    with pytest.raises(FileNotFoundError, match="no such batch folder"):
        validate_batch(tmp_path / "nope", settings, validated, quarantine)
    assert not validated.exists() and not quarantine.exists()


def _checks(expectations: list) -> dict[tuple[str, str], str]:
    return {(e.meta["column"], e.meta["check"]): type(e).__name__ for e in expectations}


def test_suites_are_derived_from_the_contract(tiny_sim, settings):
    for schema in (CATALOG, USERS, IMPRESSIONS):
        df = tiny_sim.tables[schema.name]
        checks = _checks(table_expectations(schema, df, settings, NOW, None, None))
        for col in schema.columns:
            assert (col.name, f"{col.name} has no nulls") in checks or col.nullable
            if col.values is not None:
                assert checks[(col.name, f"{col.name} is {col.allowed()}")] == "ExpectColumnValuesToBeInSet"
    # a column added to the contract is checked without touching the gate
    extra = TableSchema(
        "gadgets",
        "test",
        (
            Column("gadget_id", "string", "id"),
            Column("weight", "float", "kg", min=0, max=50, exclusive_min=True),
        ),
        key=("gadget_id",),
    )
    frame = pd.DataFrame({"gadget_id": ["a", "b"], "weight": [1.0, 2.0]})
    checks = _checks(table_expectations(extra, frame, settings, NOW, None, Previous("x", {"gadgets": 10})))
    assert checks[("weight", "weight > 0 and <= 50")] == "ExpectColumnValuesToBeBetween"
    assert checks[("weight", "weight is of type float")] == "ExpectColumnValuesToBeInTypeList"
    assert checks[("gadget_id", "gadget_id is unique")] == "ExpectColumnValuesToBeUnique"
    assert ("", "gadgets rows >= 0.5 x the previous batch (10 rows in x)") in checks


def test_failure_lines_name_table_column_and_expectation():
    results = [
        {
            "suite_name": "catalog",
            "results": [
                {"success": True, "expectation_config": {"type": "expect_column_to_exist", "meta": {}}},
                {
                    "success": False,
                    "expectation_config": {
                        "type": "expect_column_values_to_be_between",
                        "meta": {"table": "catalog", "column": "price", "check": "price > 0"},
                    },
                    "result": {
                        "unexpected_count": 2,
                        "element_count": 10,
                        "partial_unexpected_list": [-1.5, -1.5, -2.0],
                    },
                },
                {
                    "success": False,
                    "expectation_config": {"type": "expect_column_mean_to_be_between", "meta": {}},
                    "exception_info": {"m1": {"raised_exception": True, "exception_message": "boom\ntrace"}},
                },
            ],
        }
    ]
    failures, evaluated = failures_from(results)
    assert evaluated == 3 and len(failures) == 2
    assert failures[0].line() == (
        "catalog.price: price > 0 [expect_column_values_to_be_between] - "
        "2 of 10 rows unexpected, e.g. -1.5, -2"
    )
    assert failures[1].detail == "could not be evaluated: boom"
