"""`shoprank ingest-feedback`: the service's feedback log -> impressions for the next training run.

The whole append-only log is read on every run and turned into one table, so ingestion is
idempotent: running it twice on the same log writes the same bytes, and a record is never
counted twice. Steps:

1. read every record (:func:`~shoprank.feedback.records.read_files`): a line that cannot be
   read or typed (bytes that are not UTF-8, not JSON, not an object, a field of the wrong
   type, a number no column can hold) is set aside with its reason and ``file:line``, and
   the rest is read; a torn line from a crash is counted and skipped,
2. check the records against the ``feedback`` contract (:func:`check_table`) and the rules
   below; a record that fails goes to ``<quarantine>/feedback-<hash>/records.jsonl`` with
   a readable ``reason`` (never dropped silently),
3. turn each served item into one impression row of the ``impressions`` contract, with
   ``clicked``/``purchased`` from the click and purchase events of the same
   ``(request_id, item_id)`` and a null ``propensity`` (the service does not log one),
4. write ``<feedback>/impressions.parquet`` (always, even empty) and the state file
   ``<feedback>/ingested.json`` with the counts and how many impressions are new.

Rules, besides the contract: a served record needs a user and a position; a click must
follow a served ``(request_id, item_id)`` and a purchase a click; items must exist in the raw
catalog. Shoppers the raw users do not list signed up since the batch: they are kept and
listed in ``<feedback>/users.parquet`` (:mod:`shoprank.feedback.shoppers`). A served
impression must not already be in the raw impressions, nor lie past the page
(``validate.max_position``). Exact repeats (same ``event_id``, or the same event twice for
one impression) are duplicates: the first is kept, the others are counted, not quarantined.
Records of erased shoppers (``shoprank forget``), and every record of their requests, are left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from shoprank.data.schema import (
    FEEDBACK,
    IMPRESSIONS,
    ContractError,
    check_table,
    conform,
    empty,
    with_declared,
)
from shoprank.feedback.context import context_readable, request_columns
from shoprank.feedback.log import FeedbackLog
from shoprank.feedback.shoppers import USERS_FILE, new_shoppers
from shoprank.inputs.declare import shop_columns
from shoprank.logs import log

logger = logging.getLogger(__name__)

IMPRESSIONS_FILE = "impressions.parquet"
STATE_FILE = "ingested.json"
KEY = list(IMPRESSIONS.key)  # request_id, item_id
ORDER = ["ts", "request_id", "position", "item_id"]  # the impressions file's row order


@dataclass
class IngestReport:
    """What one ingestion run found and wrote."""

    events: int  # records in the log: read, or set aside as unreadable (torn lines excluded)
    impressions: int  # rows in impressions.parquet
    clicks: int
    purchases: int
    new_impressions: int  # impressions not in the previous run's table
    pending_impressions: int  # impressions since the feedback threshold was last reached
    ready: bool  # pending_impressions >= min_new_impressions: time to retrain
    min_new_impressions: int
    duplicates: int  # repeated records, kept once
    quarantined: int
    quarantine: str | None  # folder of the quarantined records, if any
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> records
    path: str = ""
    torn: int = 0  # lines cut short by a crash mid-write: never acknowledged, skipped
    erased: int = 0  # records of erased shoppers (`shoprank forget`), left out
    new_shoppers: int = 0  # shoppers the raw users do not list, kept in users.parquet

    def summary(self) -> str:
        lines = [
            f"feedback: {self.events:,} events -> {self.impressions:,} impressions "
            f"({self.clicks:,} clicked, {self.purchases:,} purchased) -> {self.path}",
            f"new since the previous ingest: {self.new_impressions:,}; pending since the last "
            f"retrain signal: {self.pending_impressions:,} of {self.min_new_impressions:,} needed"
            + (" (ready)" if self.ready else ""),
        ]
        if self.duplicates:
            lines.append(f"duplicates skipped: {self.duplicates:,}")
        if self.new_shoppers:
            lines.append(f"new shoppers (not in the raw users): {self.new_shoppers:,}")
        if self.erased:
            lines.append(f"records of erased shoppers left out: {self.erased:,}")
        if self.torn:
            lines.append(f"torn lines skipped (never acknowledged): {self.torn:,}")
        if self.quarantined:
            lines.append(f"quarantined: {self.quarantined:,} record(s) -> {self.quarantine}")
            lines += [f"  {n:>6,}  {reason}" for reason, n in sorted(self.reasons.items())]
        return "\n".join(lines)


# --- checking --------------------------------------------------------------------------------


def _contract_reasons(df: pd.DataFrame) -> pd.Series:
    """Per record, the first contract violation (null when it conforms); vectorised."""
    reason = pd.Series(pd.NA, index=df.index, dtype="string")

    def flag(mask, text: str) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool), index=df.index) & reason.isna()
        reason[mask] = text

    for col in FEEDBACK.columns:
        s = df[col.name]
        null = s.isna()
        if not col.nullable:
            flag(null, f"{col.name} is missing")
        if col.values is not None:
            flag(~null & ~s.isin(col.values), f"{col.name} must be one of {list(col.values)}")
        elif col.min is not None:
            v = pd.to_numeric(s, errors="coerce").astype("float64")
            flag(~null & ~(v >= col.min), f"{col.name} must be >= {col.min:g}")
        if col.type == "string":
            flag(~null & (s.astype("string") == ""), f"{col.name} is empty")
    return reason


def _ids(raw_dir: Path, table: str, column: str) -> pd.Series:
    path = raw_dir / f"{table}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {table} table (run `shoprank simulate` or `shoprank import`)")
    return pd.read_parquet(path, columns=[column])[column].astype("string")


def _pairs(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[KEY].astype("string"))


def _check(df: pd.DataFrame, raw_dir: Path, max_position: int | None = None) -> tuple[pd.Series, pd.Series]:
    """(reason per record, duplicate mask): a null reason and no duplicate means the record is used."""
    if df.empty:  # nothing to check (and no raw tables needed)
        return pd.Series(pd.NA, index=df.index, dtype="string"), pd.Series(False, index=df.index)
    try:
        check_table(df, FEEDBACK)
        reason = pd.Series(pd.NA, index=df.index, dtype="string")
    except ContractError:
        reason = _contract_reasons(df)
    # stable order: by time, then event id, so "first" means the same record on every run
    df = df.sort_values(["ts", "event_id"], kind="stable", na_position="last")
    reason = reason.loc[df.index]
    dup = pd.Series(False, index=df.index)
    ok = reason.isna()
    dup[ok.to_numpy()] = df.loc[ok].duplicated("event_id", keep="first").to_numpy(dtype=bool)

    def flag(mask: pd.Series, text: str) -> None:
        nonlocal ok
        mask = mask & ok & ~dup
        reason[mask] = text
        ok = reason.isna()

    items = _ids(raw_dir, "catalog", "item_id")
    flag(~df["item_id"].astype("string").isin(items), "item_id not in the raw catalog")

    served = df["event"] == "served"
    flag(served & ~context_readable(df["context"]), "context is not a JSON object")
    flag(served & df["user_id"].isna(), "served without a user_id")
    flag(served & df["position"].isna(), "served without a position")
    if max_position is not None:  # a slot past the page the logs are validated for was never seen
        past = pd.to_numeric(df["position"], errors="coerce").fillna(0) > max_position
        flag(served & past, f"position beyond validate.max_position ({max_position})")
    raw_imp = pd.read_parquet(raw_dir / "impressions.parquet", columns=KEY)
    flag(served & _pairs(df).isin(_pairs(raw_imp)), "impression already in the raw impressions")
    # one impression per (request_id, item_id): a repeated served record is a duplicate
    live = ok & ~dup
    for event in ("served", "click", "purchase"):
        rows = live & (df["event"] == event)
        repeat = pd.Series(False, index=df.index)
        repeat[rows.to_numpy()] = df.loc[rows].duplicated(KEY, keep="first").to_numpy(dtype=bool)
        dup |= repeat
    live = ok & ~dup
    shown = _pairs(df[live & served])
    flag(
        (df["event"] != "served") & ~_pairs(df).isin(shown), "no served impression for this request and item"
    )
    clicked = _pairs(df[ok & ~dup & (df["event"] == "click")])
    flag((df["event"] == "purchase") & ~_pairs(df).isin(clicked), "purchase without a click")
    return reason.sort_index(), dup.sort_index()


# --- writing ---------------------------------------------------------------------------------


def impressions_from(df: pd.DataFrame) -> pd.DataFrame:
    """Served records -> impression rows of the contract (clicked/purchased joined on the key),
    with the shop's declared impression columns read from each record's context."""
    schema = with_declared(IMPRESSIONS, shop_columns("impressions"))
    served = df[df["event"] == "served"]
    if served.empty:
        return conform(empty(schema), schema)
    key = _pairs(served)
    out = pd.DataFrame(
        {
            "request_id": served["request_id"].to_numpy(),
            "ts": served["ts"].to_numpy(),
            "user_id": served["user_id"].to_numpy(),
            "query": served["query"].fillna("").to_numpy(),
            "item_id": served["item_id"].to_numpy(),
            "position": served["position"].astype("int64").to_numpy(),
            "clicked": key.isin(_pairs(df[df["event"] == "click"])).astype("int8"),
            "purchased": key.isin(_pairs(df[df["event"] == "purchase"])).astype("int8"),
            "propensity": np.full(len(served), np.nan),
            **request_columns(served, schema),
        }
    )
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    out = out.drop_duplicates(KEY, keep="first").sort_values(ORDER, kind="stable").reset_index(drop=True)
    return check_table(conform(out, schema), schema)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(record: dict) -> dict:
    out: dict[str, Any] = {}
    for k, v in record.items():
        if v is None or (not isinstance(v, str | dict | list) and pd.isna(v)):
            out[k] = None
        elif isinstance(v, pd.Timestamp):
            out[k] = v.isoformat()
        elif isinstance(v, np.integer):
            out[k] = int(v)
        elif isinstance(v, np.floating):
            out[k] = float(v)
        else:
            out[k] = v
    return out


def _quarantine(root: Path, bad: list[dict]) -> Path:
    """Write the set-aside records to ``root/feedback-<hash>/``: the same records, the same folder."""
    lines = [json.dumps(_jsonable(r), sort_keys=True, default=str) for r in bad]
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    dest = Path(root) / f"feedback-{digest}"
    Path(root).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".incoming-feedback-{digest}-", dir=Path(root)))
    try:
        (staging / "records.jsonl").write_text("\n".join(lines) + "\n")
        counts: dict[str, int] = {}
        for r in bad:
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
        summary = [f"{len(bad)} feedback record(s) set aside by `shoprank ingest-feedback`:"]
        summary += [f"  {n:>6}  {reason}" for reason, n in sorted(counts.items())]
        (staging / "summary.txt").write_text("\n".join(summary) + "\n")
        staging.chmod(0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def previous_state(feedback_root: Path) -> dict:
    path = Path(feedback_root) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _without_erased(df: pd.DataFrame, erased: frozenset[str]) -> pd.DataFrame:
    """The records of no erased shopper: theirs, and every record of their requests (clicks carry no user)."""
    if not erased or df.empty:
        return df
    theirs = df["user_id"].astype("string").isin(erased).fillna(False).to_numpy(dtype=bool)
    requests = df.loc[theirs, "request_id"].unique()
    gone = theirs | df["request_id"].isin(requests).to_numpy(dtype=bool)
    return df[~gone].reset_index(drop=True)


def ingest_feedback(
    feedback_root: Path,
    raw_dir: Path,
    quarantine_root: Path,
    min_new_impressions: int = 1000,
    erased: frozenset[str] = frozenset(),
    max_position: int | None = None,
) -> IngestReport:
    """Rebuild ``<feedback_root>/impressions.parquet`` from the whole log; see the module docstring.

    ``erased``: pseudonyms of erased shoppers (``shoprank forget``), whose records are left out.
    ``max_position``: the last position of a page (``validate.max_position``); a served item
    below it is set aside, so one deep page never fails the whole batch's validation.
    """
    feedback_root, raw_dir = Path(feedback_root), Path(raw_dir)
    feedback_log = FeedbackLog(feedback_root)
    got = feedback_log.read_all()
    untyped = got.set_aside
    df = _without_erased(got.frame, erased)
    erased_records = len(got.frame) - len(df)
    reason, dup = _check(df, raw_dir, max_position)
    good = df[reason.isna() & ~dup]
    bad = [
        {**_jsonable(rec), "reason": why}
        for rec, why in zip(df[reason.notna()].to_dict("records"), reason.dropna(), strict=True)
    ]
    bad += [{**r.pop("record"), **r} if "record" in r else r for r in untyped]

    table = impressions_from(good)
    served = good[good["event"] == "served"]
    known = _ids(raw_dir, "users", "user_id") if len(served) else pd.Series(dtype="string")
    shoppers = new_shoppers(served, known)
    _atomic_write(feedback_root / USERS_FILE, lambda tmp: shoppers.to_parquet(tmp, index=False))
    out = feedback_root / IMPRESSIONS_FILE
    before = previous_state(feedback_root)
    old_keys = pd.MultiIndex.from_arrays([[], []])
    if out.is_file() and pq.read_metadata(out).num_rows:
        old_keys = _pairs(pd.read_parquet(out, columns=KEY))
    new = int((~_pairs(table).isin(old_keys)).sum()) if len(table) else 0
    _atomic_write(out, lambda tmp: table.to_parquet(tmp, index=False))

    baseline = int(before.get("baseline", 0))
    if baseline > len(table):  # the log was rotated or rebuilt: count from what is there now
        baseline = 0
    pending = len(table) - baseline
    ready = pending >= min_new_impressions and pending > 0
    where = _quarantine(quarantine_root, bad) if bad else None
    counts: dict[str, int] = {}
    for r in bad:
        counts[r["reason"]] = counts.get(r["reason"], 0) + 1
    report = IngestReport(
        events=len(df) + len(untyped),
        impressions=len(table),
        clicks=int(table["clicked"].sum()),
        purchases=int(table["purchased"].sum()),
        new_impressions=new,
        pending_impressions=pending,
        ready=ready,
        min_new_impressions=min_new_impressions,
        duplicates=int(dup.sum()),
        quarantined=len(bad),
        quarantine=str(where) if where else None,
        reasons=counts,
        path=str(out),
        torn=got.torn,
        erased=erased_records,
        new_shoppers=len(shoppers),
    )
    # the next run counts pending impressions from here once the threshold was reached
    state = {**asdict(report), "baseline": len(table) if ready else baseline}
    _atomic_write(feedback_root / STATE_FILE, lambda tmp: tmp.write_text(json.dumps(state, indent=1) + "\n"))
    log(
        logger,
        "ingested feedback",
        events=report.events,
        impressions=report.impressions,
        new=new,
        pending=pending,
        ready=ready,
        quarantined=report.quarantined,
        torn=got.torn,
    )
    return report
