"""Shoppers' pseudonyms: a keyed hash of the shop's user id, the only id shoprank keeps.

A pseudonym is ``PREFIX`` + the first ``HEX_CHARS`` hex digits of HMAC-SHA256(key, raw id).
It is stable (the same shopper has the same pseudonym in the import, the feedback log, the
features, the models and the service, which is what personalisation needs) and cannot be
turned back into the raw id, nor recomputed from a guessed raw id, without the key.

The key is a deployment secret: ``$SHOPRANK_PSEUDONYM_KEY`` (at least 32 characters), set
from the deployment's secret store for the service and every pipeline worker. Where it is
unset, the key is ``<paths.secrets>/pseudonym.key``, generated once with 256 random bits
(mode 0600, git-ignored): a laptop's `make up` works with nothing to configure, and the
key never leaves the machine. The same key must be used by the steps that write shoppers'
data and by the service that reads requests: with a different key every shopper is new.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

import pandas as pd

KEY_ENV = "SHOPRANK_PSEUDONYM_KEY"
KEY_FILE = "pseudonym.key"
MIN_KEY_CHARS = 32
PREFIX = "ps_"  # marks a pseudonym wherever it is read (logs, tables, the online store)
HEX_CHARS = 24  # 96 bits: no two shoppers of a billion share one (birthday bound ~1e-10)


class PseudonymKeyError(ValueError):
    """The pseudonym key is missing, too short or unreadable; the message says how to set it."""


def pseudonym(user_id: str, key: bytes) -> str:
    """The pseudonym of the shop's user id ``user_id`` under ``key``."""
    digest = hmac.new(key, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:HEX_CHARS]


def fingerprint(key: bytes) -> str:
    """What says which key named a batch's shoppers without revealing it: the pseudonym of a fixed text.

    The bundle records it and the service compares it with its own key's: under another key
    every shopper would look new, silently.
    """
    return pseudonym("shoprank: the pseudonym key's fingerprint", key)


def pseudonymise(ids: pd.Series, key: bytes) -> pd.Series:
    """Every id of ``ids`` replaced by its pseudonym (nulls stay null); hashes each distinct id once."""
    text = ids.astype("string")
    unique = text.dropna().unique()
    mapping = {raw: pseudonym(raw, key) for raw in unique}
    return text.map(mapping).astype("string")


def load_key(secrets_dir: Path | str, env: dict[str, str] | None = None) -> bytes:
    """The deployment's key: ``$SHOPRANK_PSEUDONYM_KEY``, else ``<secrets_dir>/pseudonym.key`` (made once)."""
    env = dict(os.environ) if env is None else env
    if KEY_ENV in env:
        return _checked(env[KEY_ENV], f"${KEY_ENV}")
    path = Path(secrets_dir) / KEY_FILE
    if not path.is_file():
        _create(path)
    try:
        return _checked(path.read_text().strip(), str(path))
    except OSError as exc:
        raise PseudonymKeyError(f"{path}: cannot read the pseudonym key ({exc}); set ${KEY_ENV}") from None


def _checked(text: str, where: str) -> bytes:
    if len(text) < MIN_KEY_CHARS:
        raise PseudonymKeyError(
            f"{where}: the pseudonym key has {len(text)} characters, at least {MIN_KEY_CHARS} are needed "
            f'(e.g. python -c "import secrets; print(secrets.token_hex(32))")'
        )
    return text.encode("utf-8")


def _create(path: Path) -> None:
    """A new random key at ``path``; of processes starting at once, the first one's key is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pseudonym-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
        os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process made the key first: theirs is kept
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
