"""`shoprank forget USER`: one shopper removed from everything shoprank keeps, and kept out.

The shop's user id is pseudonymised with the deployment's key, and the pseudonym is added
to the erasure list first, so a step that runs meanwhile or later (``raw``,
``ingest-feedback``, ``training-set``) leaves the shopper out. Then every table and log
that holds the shopper's rows is rewritten without them, each file replaced atomically:

- Parquet files under ``paths.raw`` (truth included), ``validated``, ``quarantine``,
  ``features``, ``training`` and ``feedback``: rows with the pseudonym as ``user_id``, and
  rows of the shopper's requests in tables that have a ``request_id`` but no user;
- JSON lines of the feedback log and of quarantined feedback: records of the shopper or
  of their requests (a click may carry no user);
- the online store (SQLite or Redis): the shopper's entity.

Not rewritten: aggregates over many shoppers (an item's click-through rate), models trained
before (the next ``train`` and ``package`` are without the shopper), old versions in the
DVC cache and remote (``dvc gc``), and records appended to a log file while it is rewritten
(the rewrite is retried if the file grew while it was read).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shoprank.config import Params
from shoprank.privacy.erasure import add_erased
from shoprank.privacy.pseudonyms import load_key, pseudonym

RETRIES = 5


@dataclass
class Forgotten:
    """What ``forget`` removed: the pseudonym, rows per file, online entries."""

    pseudonym: str
    newly_erased: bool
    rows: dict[str, int] = field(default_factory=dict)  # file -> rows or records removed
    online: int = 0

    def summary(self) -> str:
        lines = [f"forgot {self.pseudonym}" + ("" if self.newly_erased else " (erased before)")]
        lines += [f"  {n:>8,}  {path}" for path, n in sorted(self.rows.items())]
        lines.append(f"  {self.online:>8,}  online store entries")
        return "\n".join(lines)


def forget(user_id: str, params: Params) -> Forgotten:
    """Erase the shopper ``user_id`` (the shop's own id) from every store; see the module docstring."""
    who = pseudonym(user_id, load_key(params.paths.secrets))
    done = Forgotten(who, add_erased(params.paths.erasure, who))
    p = params.paths
    roots = [Path(d) for d in (p.raw, p.validated, p.quarantine, p.features, p.training, p.feedback)]
    tables = sorted({f.resolve() for root in roots if root.is_dir() for f in root.rglob("*.parquet")})
    requests: set[str] = set()
    for path in tables:  # the shopper's own rows first, collecting their requests
        requests |= _rewrite_parquet(path, who, None, done)
    logs = sorted({f.resolve() for root in roots if root.is_dir() for f in root.rglob("*.jsonl")})
    for path in logs:
        requests |= _rewrite_lines(path, who, requests, done)
    for path in tables:  # then the rows of those requests in tables without a user column
        _rewrite_parquet(path, who, requests, done)
    from shoprank.features.online.erase import erase_entity

    try:
        done.online = erase_entity(params.features, "user_id", who)
    except FileNotFoundError:  # no feature repository or registry yet: nothing online
        done.online = 0
    return done


def _rewrite_parquet(path: Path, who: str, requests: set[str] | None, done: Forgotten) -> set[str]:
    """Remove the shopper's rows (``requests`` None) or their requests' rows from one table."""
    names = pq.read_schema(path).names
    if requests is None and "user_id" not in names:
        return set()
    if requests is not None and ("user_id" in names or "request_id" not in names or not requests):
        return set()
    table = pq.read_table(path)
    if requests is None:
        hit = pc.fill_null(pc.equal(pc.cast(table["user_id"], pa.string()), who), False)
    else:
        hit = pc.is_in(pc.cast(table["request_id"], pa.string()), value_set=pa.array(sorted(requests)))
    n = pc.sum(hit).as_py() or 0
    if not n:
        return set()
    theirs = set()
    if "request_id" in names:
        theirs = set(pc.unique(pc.cast(table.filter(hit)["request_id"], pa.string())).to_pylist()) - {None}
    _replace(path, lambda tmp: pq.write_table(table.filter(pc.invert(hit)), tmp))
    done.rows[str(path)] = done.rows.get(str(path), 0) + n
    return theirs


def _mine(line: bytes, who: str, requests: set[str]) -> tuple[bool, str | None]:
    """(whether a JSON line is the shopper's or of their requests, its request id)."""
    if who.encode() in line:  # a pseudonym is in no other record, whatever the line's state
        try:
            rec = json.loads(line)
            return True, rec.get("request_id") if isinstance(rec, dict) else None
        except ValueError:
            return True, None
    try:
        rec = json.loads(line)
    except ValueError:
        return False, None
    return isinstance(rec, dict) and rec.get("request_id") in requests, None


def _rewrite_lines(path: Path, who: str, requests: set[str], done: Forgotten) -> set[str]:
    """Remove the shopper's records from one JSON-lines file; their request ids."""
    for _ in range(RETRIES):
        data = path.read_bytes()
        lines = data.splitlines(keepends=True)
        own = {r for line in lines for mine, r in [_mine(line, who, set())] if mine and r}
        gone = requests | own
        keep = [line for line in lines if not _mine(line, who, gone)[0]]
        if len(keep) == len(lines):
            return own
        _replace(path, lambda tmp, keep=keep: tmp.write_bytes(b"".join(keep)), expect=len(data))
        if path.stat().st_size == sum(map(len, keep)):
            done.rows[str(path)] = done.rows.get(str(path), 0) + len(lines) - len(keep)
            return own
    raise RuntimeError(f"{path}: still being appended to after {RETRIES} tries; run forget again")


def _replace(path: Path, write, expect: int | None = None) -> None:
    """Write a new version of ``path`` beside it, then put it in place (unless the file grew meanwhile)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if expect is None or path.stat().st_size == expect:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
