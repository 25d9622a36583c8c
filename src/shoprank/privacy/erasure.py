"""The shoppers a step must leave out: the erasure list, and the key that names them.

``shoprank forget`` appends a shopper's pseudonym to ``<paths.erasure>/erased.txt`` (one
pseudonym a line; no raw id is kept). Every step that brings shoppers' rows in honours it:
``raw`` (simulated or imported), ``ingest-feedback`` and ``training-set`` drop the rows of
erased shoppers, so a later run never brings back what ``forget`` removed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shoprank.privacy.pseudonyms import load_key, pseudonymise

ERASED_FILE = "erased.txt"


def read_erased(erasure_dir: Path | str) -> frozenset[str]:
    """The pseudonyms of every erased shopper (none when nobody was erased)."""
    path = Path(erasure_dir) / ERASED_FILE
    if not path.is_file():
        return frozenset()
    return frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())


def add_erased(erasure_dir: Path | str, pseudonym: str) -> bool:
    """Add ``pseudonym`` to the list (replaced atomically); False when it was there already."""
    erased = read_erased(erasure_dir)
    if pseudonym in erased:
        return False
    path = Path(erasure_dir) / ERASED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".erased-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{p}\n" for p in sorted(erased | {pseudonym})))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return True


@dataclass(frozen=True)
class Shoppers:
    """How a step names shoppers (the pseudonym key) and whom it leaves out (the erasure list)."""

    key: bytes
    erased: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def load(cls, secrets_dir: Path | str, erasure_dir: Path | str) -> Shoppers:
        """The deployment's key (``$SHOPRANK_PSEUDONYM_KEY`` or the key file) and erasure list."""
        return cls(load_key(secrets_dir), read_erased(erasure_dir))

    def pseudonymise(self, ids: pd.Series) -> pd.Series:
        return pseudonymise(ids, self.key)

    def kept(self, pseudonyms: pd.Series) -> np.ndarray:
        """Rows whose shopper (a pseudonym, or null) is not erased."""
        if not self.erased:
            return np.ones(len(pseudonyms), dtype=bool)
        return ~pseudonyms.astype("string").isin(self.erased).to_numpy(dtype=bool)
