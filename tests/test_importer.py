"""`shoprank import`: external CSV and Parquet tables mapped into the contract, or a clear refusal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from shoprank.config import Import
from shoprank.data.importer import ImportFailed, import_tables
from shoprank.data.io import read_table
from shoprank.data.schema import CATALOG, IMPRESSIONS, USERS, dtype_of

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {
    "catalog": {"item_id": "sku", "price": "cost"},
    "impressions": {"request_id": "rid", "clicked": "clk", "ts": "served_at"},
}


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
EXPECTED_USERS = {
    "user_id": ["7", "8"],
    "created_at": pd.to_datetime(["2023-12-01", "2023-12-02"], utc=True),
    "device": ["app", "mobile"],
}
EXPECTED_FEED = {
    "request_id": ["r1", "r1", "r2"],
    "ts": pd.to_datetime(["2024-02-01 09:00", "2024-02-01 09:00", "2024-02-02 18:15"], utc=True),
    "user_id": ["7", "7", "8"],
    "query": ["", "", ""],
    "item_id": ["101", "102", "103"],
    "position": [1, 2, 1],
    "clicked": [1, 0, 1],
    "purchased": [1, 0, 0],
}


def write_csvs(folder: Path, frames: dict[str, pd.DataFrame]) -> dict[str, Path]:
    paths = {}
    for name, df in frames.items():
        paths[name] = folder / f"src_{name}.csv"
        df.to_csv(paths[name], index=False)
    return paths


def settings(tables: dict[str, Path], columns: dict | None = None, fmt: str = "auto") -> Import:
    return Import(format=fmt, tables=tables, columns=MAPPING if columns is None else columns)


def failure(tables: dict[str, Path], tmp_path: Path, columns: dict | None = None, fmt: str = "auto") -> str:
    """Import that must fail; returns the message after checking nothing was written."""
    out = tmp_path / "out"
    with pytest.raises(ImportFailed) as info:
        import_tables(settings(tables, {} if columns is None else columns, fmt), out)
    assert not out.exists() or not list(out.iterdir())
    return str(info.value)


def test_csv_import_maps_columns_and_coerces_types(tmp_path):
    src = write_csvs(
        tmp_path, {"catalog": source_catalog(), "users": source_users(), "impressions": source_feed()}
    )
    out = tmp_path / "out"
    written = import_tables(settings(src), out)
    assert sorted(p.name for p in written) == ["catalog.parquet", "impressions.parquet", "users.parquet"]
    pd.testing.assert_frame_equal(read_table(out, "catalog"), expected(CATALOG, EXPECTED_CATALOG))
    pd.testing.assert_frame_equal(read_table(out, "users"), expected(USERS, EXPECTED_USERS))
    pd.testing.assert_frame_equal(read_table(out, "impressions"), expected(IMPRESSIONS, EXPECTED_FEED))


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
    columns = {**MAPPING, "impressions": {**MAPPING["impressions"], "query": "search_terms"}}
    out = tmp_path / "out"
    import_tables(
        settings({"catalog": tmp_path / "cat.parquet", "impressions": tmp_path / "feed.parquet"}, columns),
        out,
    )
    pd.testing.assert_frame_equal(read_table(out, "catalog"), expected(CATALOG, EXPECTED_CATALOG))
    want = {**EXPECTED_FEED, "query": ["red shoe", "red shoe", ""]}
    pd.testing.assert_frame_equal(read_table(out, "impressions"), expected(IMPRESSIONS, want))


def test_format_setting_overrides_the_suffix(tmp_path):
    path = tmp_path / "users.export"
    source_users().to_csv(path, index=False)
    assert "cannot tell the format" in failure({"users": path}, tmp_path)
    import_tables(settings({"users": path}, {}, fmt="csv"), tmp_path / "out")
    assert read_table(tmp_path / "out", "users")["user_id"].tolist() == ["7", "8"]


def test_missing_column_lists_what_the_file_has(tmp_path):
    src = write_csvs(tmp_path, {"catalog": source_catalog().drop(columns=["brand"])})
    msg = failure(src, tmp_path, MAPPING)
    assert "src_catalog.csv" in msg and "'brand'" in msg
    assert "available columns" in msg and "'warehouse'" in msg


def test_a_mapped_source_column_must_exist(tmp_path):
    src = write_csvs(tmp_path, {"catalog": source_catalog()})
    msg = failure(src, tmp_path, {"catalog": {"item_id": "product_code"}})
    assert "'product_code' (mapped to 'item_id')" in msg


def test_unparseable_values_name_column_line_and_value(tmp_path):
    feed = source_feed().astype(object)
    feed.loc[1, "position"] = "second"
    feed.loc[2, "clk"] = "maybe"
    feed.loc[0, "served_at"] = "yesterday"
    src = write_csvs(tmp_path, {"impressions": feed})
    msg = failure(src, tmp_path, MAPPING)
    assert "src_impressions.csv" in msg and "3 column(s)" in msg
    # frame row 1 is CSV line 3: the header is line 1
    assert "column 'position'" in msg and "3='second'" in msg
    assert "column 'clk'" in msg and "4='maybe'" in msg
    assert "column 'served_at'" in msg and "2='yesterday'" in msg


def test_numbers_are_not_guessed_to_be_timestamps(tmp_path):
    source_users().assign(created_at=[1_700_000_000, 1_700_000_001]).to_parquet(tmp_path / "u.parquet")
    msg = failure({"users": tmp_path / "u.parquet"}, tmp_path)
    assert "u.parquet" in msg and "column 'created_at' holds numbers" in msg


def test_contract_violations_are_reported_with_lines(tmp_path):
    cat = source_catalog()
    cat.loc[2, "cost"] = -5.0
    src = write_csvs(tmp_path, {"catalog": cat})
    msg = failure(src, tmp_path, MAPPING)
    assert "src_catalog.csv" in msg and "column 'price'" in msg and "1 row(s): 4" in msg


def test_corrupt_parquet_is_refused(tmp_path):
    path = tmp_path / "catalog.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    msg = failure({"catalog": path}, tmp_path)
    assert "catalog.parquet" in msg and "cannot read as parquet" in msg


@pytest.mark.parametrize("garbage", [bytes(range(256)) * 8, b"\xff\xfe\xfa\xc3(\x28\xa0\xa1 no nul here"])
def test_binary_garbage_is_not_csv(tmp_path, garbage):
    path = tmp_path / "catalog.csv"
    path.write_bytes(garbage)
    msg = failure({"catalog": path}, tmp_path)
    assert "catalog.csv" in msg and ("binary content" in msg or "cannot read as csv" in msg)


def test_empty_files_are_refused(tmp_path):
    (tmp_path / "zero.csv").write_bytes(b"")
    assert "zero.csv: empty file (0 bytes)" in failure({"users": tmp_path / "zero.csv"}, tmp_path)
    (tmp_path / "header.csv").write_text("user_id,created_at\n")
    assert "header.csv: no rows" in failure({"users": tmp_path / "header.csv"}, tmp_path)
    source_users().iloc[:0].to_parquet(tmp_path / "none.parquet")
    assert "none.parquet: no rows" in failure({"users": tmp_path / "none.parquet"}, tmp_path)
    assert "file not found" in failure({"users": tmp_path / "absent.csv"}, tmp_path)


def test_settings_errors(tmp_path):
    users = write_csvs(tmp_path, {"users": source_users()})["users"]
    assert "no tables configured" in failure({}, tmp_path)
    msg = failure({"clicks": users}, tmp_path)
    assert "unknown table 'clicks'" in msg and "catalog" in msg
    assert "unknown contract column(s) ['signup']" in failure(
        {"users": users}, tmp_path, {"users": {"signup": "x"}}
    )
    assert "unknown contract column(s) ['sku']" in failure(
        {"users": users}, tmp_path, {"catalog": {"sku": "id"}}
    )


def test_a_bad_second_table_writes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "catalog.parquet").write_bytes(b"previous batch")
    feed = source_feed()
    feed.loc[1, "position"] = 0  # breaks the contract: positions are 1-based
    src = write_csvs(tmp_path, {"catalog": source_catalog(), "impressions": feed})
    with pytest.raises(ImportFailed, match="column 'position'"):
        import_tables(settings(src), out)
    assert sorted(p.name for p in out.iterdir()) == ["catalog.parquet"]
    assert (out / "catalog.parquet").read_bytes() == b"previous batch"


def test_cli_import_uses_the_params_file(tmp_path):
    from typer.testing import CliRunner

    from shoprank.cli import app

    src = write_csvs(tmp_path, {"catalog": source_catalog(), "impressions": source_feed()})
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["import"] = {"format": "auto", "tables": {k: str(v) for k, v in src.items()}, "columns": MAPPING}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["import", "--params", str(tmp_path / "params.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(read_table(out, "impressions")) == 3

    raw["import"]["tables"]["users"] = str(tmp_path / "absent.csv")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["import", "--params", str(tmp_path / "params.yaml"), "--out", str(out)])
    assert result.exit_code == 1 and "absent.csv: file not found" in result.output
