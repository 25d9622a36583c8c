"""`shoprank import`: external CSV and Parquet tables mapped into the contract, or a clear refusal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from shoprank.config import Data
from shoprank.config_data import Import
from shoprank.data.importer import REPORT_FILE, ImportFailed, import_tables
from shoprank.data.io import read_table
from shoprank.data.schema import CATALOG, IMPRESSIONS, USERS, dtype_of
from shoprank.privacy import pseudonym
from tests.conftest import SHOPPERS

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {
    "catalog": {"item_id": "sku", "price": "cost"},
    "impressions": {"request_id": "rid", "clicked": "clk", "ts": "served_at"},
}
FILES = {"catalog": "src_catalog.csv", "users": "src_users.csv", "impressions": "src_impressions.csv"}


def source_catalog() -> pd.DataFrame:
    """A shop's product export: its own names for id and price, one column the contract lacks."""
    return pd.DataFrame(
        {
            "sku": [101, 102, 103],
            "title": ["Red running shoe", "Blue sandal", "Green boot"],
            "description": ["Light.", "For summer.", "Waterproof."],
            "category": ["Shoes > Running", "Shoes > Sandals", "Shoes > Boots"],
            "brand": ["Acme", "Acme", "Trek"],
            "cost": [59.9, 19.0, 120.5],
            "attributes": ['{"color": "red"}', "{}", '{"color": "green"}'],
            "created_at": ["2024-01-01T00:00:00", "2024-01-02 12:30:00", "2024-01-03T10:00:00+02:00"],
            "warehouse": ["A", "B", "A"],
        }
    )


def source_users() -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": [7, 8], "created_at": ["2023-12-01", "2023-12-02"], "device": ["app", "mobile"]}
    )


def source_feed() -> pd.DataFrame:
    """A recommendation feed log: no query column, clicks as true/false, naive timestamps."""
    return pd.DataFrame(
        {
            "rid": ["r1", "r1", "r2"],
            "served_at": ["2024-02-01 09:00:00", "2024-02-01 09:00:00", "2024-02-02 18:15:00"],
            "user_id": [7, 7, 8],
            "item_id": [101, 102, 103],
            "position": [1, 2, 1],
            "clk": ["true", "false", "1"],
            "purchased": [1, 0, 0],
        }
    )


def expected(schema, columns: dict) -> pd.DataFrame:
    """What read_table must give back: the contract's dtypes, the given values."""
    return pd.DataFrame(
        {name: pd.Series(v, dtype=dtype_of(schema.column(name))) for name, v in columns.items()}
    )


EXPECTED_CATALOG = {
    "item_id": ["101", "102", "103"],
    "title": ["Red running shoe", "Blue sandal", "Green boot"],
    "description": ["Light.", "For summer.", "Waterproof."],
    "category": ["Shoes > Running", "Shoes > Sandals", "Shoes > Boots"],
    "brand": ["Acme", "Acme", "Trek"],
    "price": [59.9, 19.0, 120.5],
    "attributes": ['{"color": "red"}', "{}", '{"color": "green"}'],
    "created_at": pd.to_datetime(["2024-01-01 00:00", "2024-01-02 12:30", "2024-01-03 08:00"], utc=True),
}


def ps(user_id: str) -> str:
    """The pseudonym an import gives a shop's user id (tables never hold the id itself)."""
    return pseudonym(user_id, SHOPPERS.key)


EXPECTED_USERS = {
    "user_id": [ps("7"), ps("8")],
    "created_at": pd.to_datetime(["2023-12-01", "2023-12-02"], utc=True),
    "device": ["app", "mobile"],
}
EXPECTED_FEED = {
    "request_id": ["r1", "r1", "r2"],
    "ts": pd.to_datetime(["2024-02-01 09:00", "2024-02-01 09:00", "2024-02-02 18:15"], utc=True),
    "user_id": [ps("7"), ps("7"), ps("8")],
    "query": ["", "", ""],
    "item_id": ["101", "102", "103"],
    "position": [1, 2, 1],
    "clicked": [1, 0, 1],
    "purchased": [1, 0, 0],
}


def write_csvs(folder: Path, frames: dict[str, pd.DataFrame]) -> None:
    for name, df in frames.items():
        df.to_csv(folder / FILES[name], index=False)


def write_all(folder: Path, **changed: pd.DataFrame) -> None:
    """The three source tables as CSV, with the given ones in place of the defaults."""
    frames = {"catalog": source_catalog(), "users": source_users(), "impressions": source_feed()}
    write_csvs(folder, {**frames, **changed})


def settings(folder: Path, tables: dict | None = None, fmt: str = "auto", **per_table: dict) -> Import:
    """Import settings for the files in ``folder``: ``tables`` as given, or the three with MAPPING.

    ``per_table``: settings merged into one table's, e.g. ``catalog={"invalid_rows": "drop"}``.
    """
    if tables is None:
        tables = {name: {"file": file, "columns": MAPPING.get(name, {})} for name, file in FILES.items()}
    tables = {name: {**spec, **per_table.get(name, {})} for name, spec in tables.items()}
    return Import.model_validate({"dir": str(folder), "format": fmt, "tables": tables})


def failure(folder: Path, imp: Import, data: Data | None = None) -> str:
    """Import that must fail; returns the message after checking nothing was written."""
    out = folder / "out"
    with pytest.raises(ImportFailed) as info:
        import_tables(imp, data or Data(), out, SHOPPERS)
    assert not out.exists() or not list(out.iterdir())
    return str(info.value)


def test_csv_import_maps_columns_and_coerces_types(tmp_path):
    write_all(tmp_path)
    out = tmp_path / "out"
    result = import_tables(settings(tmp_path), Data(), out, SHOPPERS)
    assert sorted(p.name for p in result.paths) == ["catalog.parquet", "impressions.parquet", "users.parquet"]
    pd.testing.assert_frame_equal(read_table(out, "catalog"), expected(CATALOG, EXPECTED_CATALOG))
    pd.testing.assert_frame_equal(read_table(out, "users"), expected(USERS, EXPECTED_USERS))
    pd.testing.assert_frame_equal(read_table(out, "impressions"), expected(IMPRESSIONS, EXPECTED_FEED))
    report = result.report["tables"]
    assert report["catalog"]["source_columns_dropped"] == ["warehouse"]
    assert report["impressions"]["repaired"] == {"query <- ''": 3}  # a feed: no query column
    assert result.report["impressions"] == {
        "impressions": 3, "requests": 2, "users": 2, "items": 3, "clicks": 2, "ctr": round(2 / 3, 6),
        "purchases": 1,
    }  # fmt: skip
    assert result.report_path == out / REPORT_FILE


def test_parquet_import_keeps_query_and_converts_time_zones(tmp_path):
    feed = source_feed().assign(
        served_at=pd.to_datetime(["2024-02-01 10:00", "2024-02-01 10:00", "2024-02-02 19:15"]).tz_localize(
            "Europe/Berlin"
        ),
        clk=[True, False, True],
        search_terms=["red shoe", "red shoe", None],  # None: a feed request among searches
    )
    cat = source_catalog().assign(created_at=pd.to_datetime(EXPECTED_CATALOG["created_at"]).tz_localize(None))
    feed.to_parquet(tmp_path / "feed.parquet")
    cat.to_parquet(tmp_path / "cat.parquet")
    imp = settings(
        tmp_path,
        {
            "catalog": {"file": "cat.parquet", "columns": MAPPING["catalog"]},
            "impressions": {
                "file": "feed.parquet",
                "columns": {**MAPPING["impressions"], "query": "search_terms"},
            },
        },
    )
    out = tmp_path / "out"
    result = import_tables(imp, Data(), out, SHOPPERS)
    pd.testing.assert_frame_equal(read_table(out, "catalog"), expected(CATALOG, EXPECTED_CATALOG))
    want = {**EXPECTED_FEED, "query": ["red shoe", "red shoe", ""]}
    pd.testing.assert_frame_equal(read_table(out, "impressions"), expected(IMPRESSIONS, want))
    assert result.report["tables"]["impressions"]["repaired"] == {"query <- ''": 1}


def test_format_setting_overrides_the_suffix(tmp_path):
    write_all(tmp_path)
    (tmp_path / "src_users.csv").rename(tmp_path / "users.export")
    tables = {name: {"file": file, "columns": MAPPING.get(name, {})} for name, file in FILES.items()}
    tables["users"]["file"] = "users.export"
    assert "users.export: cannot tell the format" in failure(tmp_path, settings(tmp_path, tables))
    import_tables(settings(tmp_path, tables, fmt="csv"), Data(), tmp_path / "out", SHOPPERS)
    assert read_table(tmp_path / "out", "users")["user_id"].tolist() == [ps("7"), ps("8")]


def test_missing_column_lists_what_the_file_has(tmp_path):
    write_all(tmp_path, catalog=source_catalog().rename(columns={"brand": "brands"}))
    msg = failure(tmp_path, settings(tmp_path))
    assert "src_catalog.csv" in msg and "missing column(s) 'brand' (closest source column: 'brands')" in msg
    assert "available columns" in msg and "'warehouse'" in msg


def test_a_mapped_source_column_must_exist_and_the_closest_is_named(tmp_path):
    write_all(tmp_path)
    msg = failure(tmp_path, settings(tmp_path, catalog={"columns": {"item_id": "skus"}}))
    assert "import.tables.catalog.columns.item_id: unknown source column 'skus'; closest: 'sku'" in msg
    assert "'warehouse'" in msg  # what the file has


def test_unparseable_values_name_column_line_and_value(tmp_path):
    feed = source_feed().astype(object)
    feed.loc[1, "position"] = "second"
    feed.loc[2, "clk"] = "maybe"
    feed.loc[0, "served_at"] = "yesterday"
    write_all(tmp_path, impressions=feed)
    msg = failure(tmp_path, settings(tmp_path))
    assert "src_impressions.csv" in msg and "3 column(s) cannot be parsed" in msg
    # frame row 1 is CSV line 3: the header is line 1
    assert "column 'position': not a valid int" in msg and "3='second'" in msg
    assert "column 'clk': not a valid flag" in msg and "4='maybe'" in msg
    assert "column 'served_at': not a valid timestamp" in msg and "2='yesterday'" in msg
    assert "invalid_rows: drop" in msg  # how to drop such rows instead


def test_numbers_are_not_guessed_to_be_timestamps(tmp_path):
    write_all(tmp_path)
    source_users().assign(created_at=[1_700_000_000, 1_700_000_001]).to_parquet(tmp_path / "u.parquet")
    msg = failure(tmp_path, settings(tmp_path, users={"file": "u.parquet"}))
    assert "u.parquet" in msg and "column 'created_at' holds numbers" in msg
    assert "import.tables.users.timestamps.created_at: {unit: s}" in msg


def test_contract_violations_are_reported_with_lines(tmp_path):
    cat = source_catalog()
    cat.loc[2, "cost"] = -5.0
    write_all(tmp_path, catalog=cat)
    msg = failure(tmp_path, settings(tmp_path))
    assert "src_catalog.csv" in msg and "column 'price': values must be > 0, 1 row(s): 4" in msg


def test_corrupt_parquet_is_refused(tmp_path):
    write_all(tmp_path)
    (tmp_path / "catalog.parquet").write_bytes(b"PAR1 this is not really parquet")
    msg = failure(tmp_path, settings(tmp_path, catalog={"file": "catalog.parquet"}))
    assert "catalog.parquet" in msg and "cannot read as parquet" in msg


@pytest.mark.parametrize("garbage", [bytes(range(256)) * 8, b"\xff\xfe\xfa\xc3(\x28\xa0\xa1 no nul here"])
def test_binary_garbage_is_not_csv(tmp_path, garbage):
    write_all(tmp_path)
    (tmp_path / FILES["catalog"]).write_bytes(garbage)
    msg = failure(tmp_path, settings(tmp_path))
    assert "src_catalog.csv" in msg and ("binary content" in msg or "cannot read as csv" in msg)


def test_empty_files_are_refused(tmp_path):
    write_all(tmp_path)
    (tmp_path / "zero.csv").write_bytes(b"")
    assert "zero.csv: empty file (0 bytes)" in failure(
        tmp_path, settings(tmp_path, users={"file": "zero.csv"})
    )
    (tmp_path / "header.csv").write_text("user_id,created_at\n")
    assert "header.csv: no rows" in failure(tmp_path, settings(tmp_path, users={"file": "header.csv"}))
    source_users().iloc[:0].to_parquet(tmp_path / "none.parquet")
    assert "none.parquet: no rows" in failure(tmp_path, settings(tmp_path, users={"file": "none.parquet"}))
    assert "file not found" in failure(tmp_path, settings(tmp_path, users={"file": "absent.csv"}))


def test_settings_errors(tmp_path):
    write_all(tmp_path)
    assert "no tables configured" in failure(tmp_path, settings(tmp_path, {}))
    msg = failure(tmp_path, settings(tmp_path, {"clicks": {"file": "x.csv"}}))
    assert "import.tables: unknown table 'clicks'" in msg and "catalog" in msg
    msg = failure(tmp_path, settings(tmp_path, {"impressions": {"file": FILES["impressions"]}}))
    assert "import.tables.catalog is required" in msg
    msg = failure(tmp_path, settings(tmp_path, users={"columns": {"signup": "x"}}))
    assert "import.tables.users.columns: unknown column 'signup'" in msg and "'created_at'" in msg
    msg = failure(tmp_path, settings(tmp_path, catalog={"constants": {"brnd": "Acme"}}))
    assert "import.tables.catalog.constants: unknown column 'brnd'; closest: 'brand'" in msg
    msg = failure(
        tmp_path, settings(tmp_path, catalog={"columns": {"item_id": "sku"}, "constants": {"price": "cheap"}})
    )
    assert "import.tables.catalog.constants.price: 'cheap' is not a valid float" in msg
    msg = failure(tmp_path, settings(tmp_path, catalog={"click": {"column": "x", "min": 1}}))
    assert "import.tables.catalog.click: only impressions has this setting" in msg
    msg = failure(tmp_path, settings(tmp_path, catalog={"timestamps": {"price": {"unit": "s"}}}))
    assert "'price' is not a timestamp column" in msg
    msg = failure(tmp_path, settings(tmp_path, impressions={"defaults": {"ts": "first_seen"}}))
    assert "first_seen fills created_at of catalog or users only" in msg
    msg = failure(
        tmp_path, settings(tmp_path, catalog={"constants": {"title": "x"}, "template": {"title": "y"}})
    )
    assert "'title' is already built by import.tables.catalog.constants" in msg
    msg = failure(tmp_path, settings(tmp_path, catalog={"template": {"description": "{titel}!"}}))
    assert "unknown placeholder column 'titel'; closest: 'title'" in msg


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"file": "a.csv", "timestamps": {"ts": {}}}, "exactly one of unit"),
        ({"file": "a.csv", "timestamps": {"ts": {"unit": "h"}}}, "unit"),
        ({"file": "a.csv", "click": {"column": "r"}}, "give min and/or max"),
        ({"file": "a.csv", "click": {"column": "r", "min": 4, "values": [5]}}, "not both"),
        (
            {"file": "a.csv", "request_id": {"column": "s", "session_gap_minutes": 30}},
            "exactly one of column",
        ),
        ({"file": "a.csv", "invalid_rows": "skip"}, "invalid_rows"),
        ({"file": "a.csv", "colums": {}}, "colums"),
    ],
)
def test_settings_shape_is_checked_when_params_load(table, needle):
    with pytest.raises(ValueError, match=needle):
        Import.model_validate({"tables": {"impressions": table}})


def test_a_bad_second_table_writes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "catalog.parquet").write_bytes(b"previous batch")
    feed = source_feed()
    feed.loc[1, "position"] = 0  # breaks the contract: positions are 1-based
    write_all(tmp_path, impressions=feed)
    with pytest.raises(ImportFailed, match="column 'position'"):
        import_tables(settings(tmp_path), Data(), out, SHOPPERS)
    assert sorted(p.name for p in out.iterdir()) == ["catalog.parquet"]
    assert (out / "catalog.parquet").read_bytes() == b"previous batch"


def test_cli_import_uses_the_params_file(tmp_path):
    from typer.testing import CliRunner

    from shoprank.cli import app

    write_all(tmp_path)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["import"] = settings(tmp_path).model_dump(mode="json", exclude_defaults=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["import", "--params", str(tmp_path / "params.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(read_table(out, "impressions")) == 3
    assert "impressions 3 rows" in result.output and "2 requests, 2 clicks" in result.output

    raw["import"]["tables"]["users"]["file"] = "absent.csv"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["import", "--params", str(tmp_path / "params.yaml"), "--out", str(out)])
    assert result.exit_code == 1 and "absent.csv: file not found" in result.output
