"""`shoprank import` on rows and values that cannot be read: dropped and counted, or a clear failure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from shoprank.config import Data
from shoprank.data.importer import import_tables
from shoprank.data.importer.coerce import parse
from shoprank.data.io import read_table
from tests.conftest import ROOT, SHOPPERS
from tests.test_importer import FILES, MAPPING, failure, settings, write_all

FEED = FILES["impressions"]
# four more rows of the feed's CSV (lines 5-8), each unreadable in its own way
BAD_LINES = {
    5: b"r3,2024-02-03 10:00:00,8,caf\xe9,1,true,0",  # a byte that is not UTF-8 in item_id
    6: b"r4,2024-02-03 10:00:00,8,101," + str(10**20).encode() + b",true,0",  # position 10**20
    7: b"r5,2024-02-03 10:00:00,8,102,1,true,0,an extra field",
    8: b"r6,2024-02-03 10:00:00,8,103,1.5e400,true,0",  # a number no float holds
}
REASONS = {
    5: "column 'item_id': not UTF-8 text",
    6: "column 'position': not a valid int",
    7: "line not readable as a row",
    8: "column 'position': not a valid int",
}


def _write_feed_with_bad_lines(folder) -> None:
    write_all(folder)
    path = folder / FEED
    assert len(path.read_bytes().splitlines()) == 4  # header + 3 rows: the bad ones are lines 5-8
    with open(path, "ab") as f:
        f.write(b"\n".join(BAD_LINES.values()) + b"\n")


def test_unreadable_rows_are_dropped_and_counted_per_reason(tmp_path):
    _write_feed_with_bad_lines(tmp_path)
    out = tmp_path / "out"
    imp = settings(tmp_path, impressions={"invalid_rows": "drop"})
    result = import_tables(imp, Data(), out, SHOPPERS)
    table = read_table(out, "impressions")
    assert sorted(table["request_id"]) == ["r1", "r1", "r2"]  # every readable row, nothing else
    report = result.report["tables"]["impressions"]
    assert (report["rows_read"], report["rows_written"], report["rows_dropped"]) == (7, 3, 4)
    dropped = {row: reason for reason, d in report["dropped"].items() for row in d["first_rows"]}
    assert sorted(dropped) == sorted(BAD_LINES)
    for row, reason in REASONS.items():
        assert dropped[row].startswith(reason), (row, dropped[row])
    json.loads((out / "import_report.json").read_text())  # strict JSON despite the bad bytes


def test_unreadable_rows_fail_the_import_by_default_with_rows_named(tmp_path):
    _write_feed_with_bad_lines(tmp_path)
    msg = failure(tmp_path, settings(tmp_path))
    assert "line 7" in msg or "row 7" in msg
    assert "invalid_rows: drop" in msg


def test_each_unreadable_value_fails_with_its_row(tmp_path):
    for line, reason in REASONS.items():
        if line == 7:
            continue
        write_all(tmp_path)
        with open(tmp_path / FEED, "ab") as f:
            f.write(BAD_LINES[line] + b"\n")
        msg = failure(tmp_path, settings(tmp_path))
        assert reason in msg and "first rows: 5=" in msg, msg


def test_epoch_times_beyond_any_date_are_invalid_not_a_crash(tmp_path):
    write_all(tmp_path)
    feed = pd.read_csv(tmp_path / FEED, dtype=str)
    feed["served_at"] = ["1706778000", "1e30", "1706864100"]
    feed.to_csv(tmp_path / FEED, index=False)
    imp = settings(tmp_path, impressions={"timestamps": {"ts": {"unit": "s"}}, "invalid_rows": "drop"})
    result = import_tables(imp, Data(), tmp_path / "out", SHOPPERS)
    report = result.report["tables"]["impressions"]
    assert report["rows_dropped"] == 1
    assert list(report["dropped"]) == ["column 'served_at': not a valid timestamp (epoch s)"]


def test_nested_values_too_deep_for_json_are_invalid_not_a_crash():
    deep: list = []
    for _ in range(5000):  # deeper than the JSON writer recurses
        deep = [deep]
    # what pandas reads from a Parquet column of structs and lists: dicts, lists, arrays
    nested = pd.Series([{"color": "red"}, deep, np.array([1, 2])], dtype=object)
    values, problem = parse(nested, "string", "attributes")
    assert values.tolist()[0] == '{"color": "red"}' and values.tolist()[2] == "[1, 2]"
    assert problem is not None and problem.mask.tolist() == [False, True, False]


@pytest.mark.parametrize("mode, code", [("drop", 0), ("fail", 1)])
def test_cli_import_never_ends_in_a_traceback(tmp_path, mode, code):
    _write_feed_with_bad_lines(tmp_path)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(tmp_path / v) for k, v in raw["paths"].items()}
    raw["data"]["source"] = "import"
    tables = {name: {"file": file, "columns": MAPPING.get(name, {})} for name, file in FILES.items()}
    tables["impressions"]["invalid_rows"] = mode
    raw["import"] = {"dir": str(tmp_path), "tables": tables}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    out = CliRunner().invoke(app, ["import", "--params", str(params)])
    assert out.exit_code == code, out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)
    assert ("dropped invalid rows" in out.output) if mode == "drop" else ("error:" in out.output)
