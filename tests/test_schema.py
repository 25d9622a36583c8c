"""The data contract: check_table accepts what conforms, names column and rows of what does not."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from shoprank.data.io import read_table, write_tables
from shoprank.data.schema import (
    CATALOG,
    FEEDBACK,
    IMPRESSIONS,
    TABLES,
    USERS,
    ContractError,
    check_table,
    conform,
    dtype_of,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "data-contract.md"
LABELS = [10, 11, 12, 13]  # not 0..n-1, so a message that gives positions instead of labels is caught


def catalog() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4"],
            "title": ["Red shoe", "Blue shoe", "Tent", "Pan"],
            "description": ["a", "b", "c", "d"],
            "category": ["Shoes > Running"] * 2 + ["Outdoor > Tents", "Kitchen > Pans"],
            "brand": ["Acme", "Acme", "Trek", "Cook"],
            "price": [59.9, 60.0, 120.0, 0.01],
            "attributes": ["{}", '{"color": "blue"}', "{}", "{}"],
            "created_at": pd.to_datetime(["2024-01-01"] * 4, utc=True),
        },
        index=LABELS,
    )


def users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4"],
            "created_at": pd.to_datetime(["2023-12-01"] * 4, utc=True),
            "region": ["north", None, "south", "east"],
            "device": ["app", "mobile", None, "desktop"],
        },
        index=LABELS,
    )


def impressions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": ["r1", "r1", "r2", "r2"],
            "ts": pd.to_datetime(["2024-02-01 09:00"] * 4, utc=True),
            "user_id": ["u1", "u1", "u2", "u2"],
            "query": ["red shoe", "red shoe", "", ""],
            "item_id": ["i1", "i2", "i1", "i3"],
            "position": [1, 2, 1, 2],
            "clicked": pd.array([1, 1, 0, 0], dtype="int8"),
            "purchased": pd.array([1, 0, 0, 0], dtype="int8"),
            "propensity": [0.5, 1.0, None, 0.01],
        },
        index=LABELS,
    )


def feedback() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e4"],
            "ts": pd.to_datetime(["2024-03-01 10:00"] * 4, utc=True),
            "event": ["served", "served", "click", "purchase"],
            "request_id": ["r9"] * 4,
            "user_id": ["u1", "u1", None, "u1"],
            "query": ["tent", "tent", "tent", None],
            "item_id": ["i3", "i4", "i3", "i3"],
            "position": pd.array([1, 2, None, 1], dtype="Int64"),
            "score": [0.9, 0.2, None, None],
            "model_version": ["v1", "v1", None, None],
        },
        index=LABELS,
    )


FRAMES = {"catalog": catalog, "users": users, "impressions": impressions, "feedback": feedback}


def violation(df: pd.DataFrame, schema) -> str:
    with pytest.raises(ContractError) as info:
        check_table(df, schema)
    assert info.value.table == schema.name
    return str(info.value)


@pytest.mark.parametrize("name", list(TABLES))
def test_conforming_tables_pass_unchanged(name):
    df = FRAMES[name]()
    assert check_table(df, TABLES[name]) is df
    pd.testing.assert_frame_equal(df, FRAMES[name]())


def test_optional_columns_may_be_absent():
    check_table(users().drop(columns=["region", "device"]), USERS)
    check_table(impressions().drop(columns=["purchased", "propensity"]), IMPRESSIONS)


def test_nulls_are_reported_with_row_labels():
    df = catalog()
    df.loc[[11, 13], "title"] = None
    msg = violation(df, CATALOG)
    assert "column 'title': nulls not allowed, 2 row(s): 11, 13" in msg


@pytest.mark.parametrize(
    ("schema", "column", "value", "allowed"),
    [
        (CATALOG, "price", -1.0, "> 0"),
        (CATALOG, "price", 0.0, "> 0"),  # the lower bound is exclusive
        (IMPRESSIONS, "position", 0, ">= 1"),
        (IMPRESSIONS, "propensity", 1.5, "> 0 and <= 1"),
        (IMPRESSIONS, "clicked", 2, "0 or 1"),
        (USERS, "device", "tablet", "'mobile', 'desktop', 'app'"),
        (FEEDBACK, "event", "view", "'served', 'click', 'purchase'"),
    ],
)
def test_values_outside_the_allowed_range(schema, column, value, allowed):
    df = FRAMES[schema.name]()
    df.loc[12, column] = value
    msg = violation(df, schema)
    assert f"column {column!r}: values must be {allowed}, 1 row(s): 12" in msg


def test_infinite_price_is_out_of_range():
    df = catalog()
    df.loc[10, "price"] = float("inf")
    assert "column 'price': values must be > 0, 1 row(s): 10" in violation(df, CATALOG)


@pytest.mark.parametrize(
    ("schema", "column", "values", "dtype", "expected"),
    [
        (CATALOG, "price", ["1", "2", "3", "4"], None, "expected float, found dtype object"),
        (CATALOG, "item_id", [1, 2, 3, 4], None, "expected string, found dtype int64"),
        # object dtype holding numbers is not text, although pandas calls object a string dtype
        (CATALOG, "item_id", [1, 2, 3, 4], object, "expected string, found dtype object"),
        (IMPRESSIONS, "ts", ["2024-02-01"] * 4, None, "expected timestamp, found dtype object"),
        (IMPRESSIONS, "position", [1.0, 2.0, 1.0, 2.0], None, "expected int, found dtype float64"),
    ],
)
def test_wrong_dtype_names_the_column(schema, column, values, dtype, expected):
    df = FRAMES[schema.name]()
    df[column] = pd.Series(values, index=df.index, dtype=dtype)
    assert f"column {column!r}: {expected}" in violation(df, schema)


def test_duplicate_keys_name_the_repeated_rows():
    df = impressions()
    df.loc[13, "item_id"] = "i1"  # r2 shows i1 twice
    assert "key ['request_id', 'item_id'] not unique, 1 row(s): 13" in violation(df, IMPRESSIONS)


def test_purchase_without_click():
    df = impressions()
    df.loc[[12, 13], "purchased"] = 1  # 12 and 13 were not clicked
    assert "column 'purchased': purchase without click, 2 row(s): 12, 13" in violation(df, IMPRESSIONS)


def test_purchase_check_survives_nullable_flags():
    df = impressions()
    df["clicked"] = pd.array([None, 1, 0, 0], dtype="Int8")
    df.loc[12, "purchased"] = 1
    msg = violation(df, IMPRESSIONS)
    assert "column 'clicked': nulls not allowed, 1 row(s): 10" in msg
    assert "purchase without click, 1 row(s): 12" in msg


def test_missing_column_is_named():
    msg = violation(catalog().drop(columns=["brand"]), CATALOG)
    assert "missing column(s) ['brand']" in msg and "'title'" in msg  # lists what was found


def test_all_problems_are_reported_at_once_and_long_lists_are_cut():
    df = pd.concat([impressions()] * 3, ignore_index=True)  # 12 rows, every key repeated
    df["position"] = 0
    msg = violation(df, IMPRESSIONS)
    assert msg.startswith("impressions: 2 contract violation(s)")
    assert "column 'position': values must be >= 1, 12 row(s): 0, 1, 2, 3, 4 and 7 more" in msg
    assert "not unique, 8 row(s): 4, 5, 6, 7, 8 and 3 more" in msg


def test_extra_columns_are_allowed_unless_told_otherwise():
    df = users().assign(loyalty="gold")
    check_table(df, USERS)
    with pytest.raises(ContractError, match=r"unexpected column\(s\) \['loyalty'\]"):
        check_table(df, USERS, extra_ok=False)


def test_conform_casts_to_canonical_dtypes():
    df = impressions().drop(columns=["propensity"])
    df["ts"] = df["ts"].dt.tz_localize(None)  # naive: taken as UTC
    df["clicked"] = df["clicked"].astype(bool)
    out = conform(df[list(reversed(df.columns))], IMPRESSIONS)
    assert list(out.columns) == [c for c in IMPRESSIONS.names if c != "propensity"]
    assert {c: str(t) for c, t in out.dtypes.items()} == {
        c: dtype_of(IMPRESSIONS.column(c)) for c in out.columns
    }
    assert out["ts"].iloc[0] == pd.Timestamp("2024-02-01 09:00", tz="UTC")


def test_feedback_with_null_positions_round_trips(tmp_path):
    write_tables(tmp_path, {"feedback": feedback()})
    back = read_table(tmp_path, "feedback")
    assert str(back["position"].dtype) == "Int64"
    assert back["position"].isna().tolist() == [False, False, True, False]


def documented_columns() -> dict[str, list[list[str]]]:
    """Rows of the markdown table under each `### <table>` heading of the data-contract doc."""
    tables: dict[str, list[list[str]]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        if heading := re.fullmatch(r"###\s+(\w+)\s*", line):
            current = heading.group(1)
            tables[current] = []
        elif line.startswith("#"):
            current = None
        elif current and line.startswith("|"):
            cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
            if cells[0] != "column" and not set(cells[0]) <= set("-: "):
                tables[current].append(cells)
    return tables


def test_doc_lists_exactly_the_schema_columns():
    documented = documented_columns()
    assert sorted(documented) == sorted(TABLES), "every contract table needs a `### name` section"
    for name, schema in TABLES.items():
        doc = [row[0] for row in documented[name]]
        assert [c for c in schema.names if c not in doc] == [], f"{name}: columns missing from {DOC.name}"
        assert [c for c in doc if c not in schema.names] == [], (
            f"{name}: {DOC.name} lists columns the schema lacks"
        )
        assert doc == schema.names, f"{name}: {DOC.name} lists the columns in another order"


def test_doc_agrees_on_type_nullability_presence_and_allowed_values():
    for name, schema in TABLES.items():
        for column, type_, nullable, present, allowed, _meaning in documented_columns()[name]:
            col = schema.column(column)
            assert type_ == col.type, f"{name}.{column}"
            assert nullable == ("yes" if col.nullable else "no"), f"{name}.{column}"
            assert present == ("optional" if column in schema.optional else "required"), f"{name}.{column}"
            assert allowed == col.allowed(), f"{name}.{column}"
