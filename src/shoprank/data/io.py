"""Reading and writing contract tables as Parquet, atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from shoprank.data.schema import TABLES, check_table, conform


def table_path(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}.parquet"


def read_table(directory: Path, name: str, *, check: bool = True) -> pd.DataFrame:
    """Read one contract table from ``directory``; check it against its schema."""
    path = table_path(directory, name)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no {name} table here (run `shoprank simulate` or `shoprank import`)"
        )
    df = pd.read_parquet(path)
    return check_table(df, TABLES[name]) if check and name in TABLES else df


def write_tables(directory: Path, tables: Mapping[str, pd.DataFrame], contract: bool = True) -> list[Path]:
    """Write several tables so that readers see all of them or none of the new ones.

    Files go to a temporary folder on the same file system first and are then moved
    into place with ``os.replace``; a failure while writing leaves ``directory``
    untouched. With ``contract``, contract tables are cast to their canonical dtypes.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=directory))
    try:
        staged = []
        for name, df in tables.items():
            out = conform(df, TABLES[name]) if contract and name in TABLES else df
            path = table_path(tmp, name)
            out.to_parquet(path, index=False)
            staged.append(path)
        final = []
        for path in staged:
            dest = directory / path.name
            os.replace(path, dest)
            final.append(dest)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
