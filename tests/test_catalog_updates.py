"""Catalogue update rows: the contract's checks, and `shoprank catalog-update` dropping the valid
rows where the service reads them and quarantining the others with their reasons."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from shoprank.data.updates import QUARANTINE, read_checked
from tests.conftest import tiny_raw_params

runner = CliRunner()
NOW = datetime.now(UTC)


def catalog_row(item_id: str, title: str, **extra) -> dict:
    row = {
        "item_id": item_id,
        "title": title,
        "description": f"{title}, listed today",
        "category": "Outdoor > Tents",
        "brand": "Zorblax",
        "price": 149.0,
        "attributes": json.dumps({"colour": "green"}),
        "created_at": datetime.now(UTC).isoformat(),  # listed now: each row newer than the last
    }
    return {**row, **extra}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    return path


@pytest.fixture
def cli_params(tmp_path) -> Iterator[tuple[Path, Path]]:
    """A params file whose catalogue updates go under ``tmp_path``; the CLI's log set-up undone after."""
    logger = logging.getLogger("shoprank")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    raw = tiny_raw_params()
    raw["paths"]["catalog_updates"] = str(tmp_path / "updates")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    yield path, tmp_path / "updates"
    logger.handlers[:], logger.propagate = handlers, propagate
    logger.setLevel(level)


def test_the_cli_drops_checked_rows_where_the_service_reads_them(cli_params, tmp_path):
    params, folder = cli_params
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [catalog_row("new_0001", "Zorblax trail tent"), {"item_id": "item_000003", "delisted": True}],
    )
    result = runner.invoke(app, ["catalog-update", str(source), "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert "2 row(s) (1 listed or changed, 1 delisted)" in result.output
    (landed,) = folder.glob("*.parquet")
    rows = pd.read_parquet(landed)
    assert rows["item_id"].tolist() == ["new_0001", "item_000003"]
    assert rows["delisted"].tolist() == [0, 1] and rows.loc[0, "price"] == 149.0
    assert not (folder / QUARANTINE).exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # nothing half-written left


def test_the_cli_rejects_bad_rows_by_row_and_column_and_keeps_them(cli_params, tmp_path):
    params, folder = cli_params
    lines = [
        json.dumps(catalog_row("new_0002", "Good tent")),
        json.dumps(catalog_row("new_0003", "Free tent", price=-1)),
        "{not json",
        json.dumps({k: v for k, v in catalog_row("new_0004", "No title").items() if k != "title"}),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["catalog-update", str(source), "--params", str(params)])
    assert result.exit_code == 1
    assert "3 row(s) rejected" in result.output
    assert "row 2: column 'price': values must be > 0 (got -1.0)" in result.output
    assert "row 3: not JSON" in result.output
    assert "row 4: column 'title': nulls not allowed" in result.output
    (landed,) = folder.glob("*.parquet")
    assert pd.read_parquet(landed)["item_id"].tolist() == ["new_0002"]  # the good row still lands
    (kept,) = (folder / QUARANTINE).glob("*.jsonl")
    quarantined = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [q["row"] for q in quarantined] == [2, 3, 4]
    assert (
        quarantined[0]["values"]["item_id"] == "new_0003" and quarantined[1]["values"]["line"] == "{not json"
    )


def test_the_cli_refuses_a_file_it_cannot_read(cli_params, tmp_path):
    params, folder = cli_params
    source = tmp_path / "in.csv"
    source.write_text("item_id\nx\n")
    result = runner.invoke(app, ["catalog-update", str(source), "--params", str(params)])
    assert result.exit_code == 2 and "use JSON lines (.jsonl) or Parquet" in result.output
    assert not folder.exists() or not list(folder.iterdir())


def test_checked_rows_keep_the_contract_types(tmp_path):
    source = write_jsonl(
        tmp_path / "in.jsonl", [{**catalog_row("x", "A tent"), "item_id": 7, "price": "12.5"}]
    )
    checked = read_checked(source)
    assert not checked.rejected
    assert checked.rows.loc[0, "item_id"] == "7" and checked.rows.loc[0, "price"] == 12.5
    assert str(checked.rows["created_at"].dtype) == "datetime64[us, UTC]"
    assert checked.rows.loc[0, "created_at"] > pd.Timestamp(NOW - timedelta(minutes=1))
