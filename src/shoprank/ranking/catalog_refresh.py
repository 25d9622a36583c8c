"""A catalogue that stays fresh: each worker applies the catalogue updates that land between runs.

Update files (:mod:`shoprank.data.updates`: new, changed and delisted items) land in
``paths.catalog_updates``. A worker applies the files it has not applied yet at load,
every ``serve.catalog_refresh_s`` on a daemon thread, and when ``POST /catalog/refresh``
reaches it (:meth:`CatalogRefresher.refresh`). Applying builds the next catalog, indexes
and feed index beside the serving ones (:mod:`~shoprank.ranking.catalog_apply`), then
swaps the references under the ranker's :class:`~shoprank.ranking.swap.SwapLock`, so a
request sees the catalogue before the update or after it, never a mix. A bad row is
rejected (logged, and listed in the endpoint's answer) and the others are applied; the
file stays in the folder.

Each worker keeps the files it applied; one loaded from another bundle (a reload) applies
them again from the start, over its own catalog. Files that landed before the bundle's
catalogue was accepted (the manifest's ``catalog_as_of``: its batch's validation time) are
taken to be in it and skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from shoprank.config import Serve
from shoprank.data.updates import UpdateError, describe, pending, read_checked, update_schema
from shoprank.logs import log
from shoprank.ranking.catalog import Catalog
from shoprank.ranking.catalog_apply import Built, ColdItems, build
from shoprank.ranking.experiment import OnlineExperiment
from shoprank.ranking.features import OnlineFeatures
from shoprank.ranking.periodic import Periodic
from shoprank.ranking.requests import RequestRules
from shoprank.ranking.scoring import Scoring
from shoprank.ranking.served import ServedResponses
from shoprank.ranking.swap import SwapLock
from shoprank.retrieval.history import FeedIndex
from shoprank.retrieval.hybrid import HybridRetriever

logger = logging.getLogger(__name__)
Stamp = tuple[int, int]  # a file's modification time (ns) and size: a file rewritten is read again


class Ranker(Protocol):
    """The parts of :class:`~shoprank.ranking.ranker.Ranker` an update reads and replaces."""

    manifest: dict[str, Any]
    settings: Serve
    catalog: Catalog
    retriever: HybridRetriever
    feed: FeedIndex
    features: OnlineFeatures
    scoring: Scoring
    experiment: OnlineExperiment
    served: ServedResponses
    vocab: dict[str, dict[str, str]]
    request_rules: RequestRules

    @property
    def encoder(self) -> Any: ...


class Listed:
    """The item ids a ``rank`` request may send: known and not delisted (no copy of the catalog)."""

    def __init__(self, row_of: Mapping[str, int], listed: np.ndarray | None):
        self.row_of, self.listed = row_of, listed

    def __contains__(self, item_id: object) -> bool:
        row = self.row_of.get(item_id) if isinstance(item_id, str) else None
        return row is not None and (self.listed is None or bool(self.listed[row]))


def cut_off(manifest: Mapping[str, Any]) -> int | None:
    """The time (ns since the epoch) before which update files are taken to be in the bundle."""
    stamp = manifest.get("catalog_as_of") or manifest.get("packaged_at")
    return pd.Timestamp(stamp).value if stamp else None


class CatalogRefresher(Periodic):
    """One worker's catalogue updates: :meth:`start` once (applies what is there, then on a
    schedule), :meth:`refresh` on a call, :meth:`stop` to end the thread."""

    thread_name = "catalog-refresh"

    def __init__(self, ranker: Ranker, folder: Path, period_s: float, new_item_days: float):
        super().__init__(period_s, enabled=period_s > 0)
        self.ranker, self.folder = ranker, Path(folder)
        self.lock = SwapLock()
        self.since = cut_off(ranker.manifest)
        self.cold = ColdItems.of(ranker.catalog.items, new_item_days)
        self.schema = update_schema()
        self.applied: dict[str, Stamp] = {}
        self._one_at_a_time = threading.Lock()  # the schedule and a call never apply together

    def start(self) -> None:
        self.tick()  # what landed before this worker started is served from its first request
        super().start()

    def tick(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # logged; the files are tried again on the next tick
            log(logger, "catalogue refresh failed", error=repr(exc)[:300], level=logging.ERROR, exc_info=True)

    def refresh(self) -> dict[str, Any]:
        """Apply the files that landed since the last refresh; what was applied and rejected."""
        t0 = time.perf_counter()
        with self._one_at_a_time:
            files = self.new_files()
            rows, rejected = self.read(files)
            counts: dict[str, Any] = {"listed": 0, "changed": 0, "delisted": 0, "unknown_delisted": 0}
            if rows is not None:
                built = build(
                    self.ranker.catalog,
                    self.ranker.retriever,
                    self.ranker.feed,
                    rows,
                    self.ranker.encoder,
                    self.cold,
                    datetime.now(UTC),
                )
                self.swap(built)
                counts = {k: v for k, v in built.counts.items() if k != "items"}
            self.applied.update({p.name: stamp for p, stamp in files.items()})
        report = {
            "files": [p.name for p in files],
            **counts,
            "rejected": rejected,
            "items": self.listed_items(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        if files:
            log(
                logger,
                "catalogue updated",
                logging.INFO,
                False,
                files=len(files),
                rejected=len(rejected),
                **counts,
            )
        return report

    def new_files(self) -> dict[Path, Stamp]:
        """The update files not applied yet, in the order they landed; those older than the bundle's
        catalogue are left out."""
        out: dict[Path, Stamp] = {}
        for path in pending(self.folder):
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if (self.since is None or stamp[0] > self.since) and self.applied.get(path.name) != stamp:
                out[path] = stamp
        return out

    def read(self, files: Mapping[Path, Stamp]) -> tuple[pd.DataFrame | None, list[dict[str, Any]]]:
        """The valid rows of ``files`` in order (None: none), and every rejected row with its reasons."""
        parts, rejected = [], []
        for path in files:
            try:
                checked = read_checked(path, self.schema)
            except UpdateError as exc:
                rejected.append({"file": path.name, "row": None, "problems": [str(exc)]})
                log(logger, "catalogue update file unreadable", error=str(exc), level=logging.WARNING)
                continue
            for r in checked.rejected:
                rejected.append({"file": path.name, "row": r["row"], "problems": r["problems"]})
            if checked.rejected:
                first = describe(checked.rejected[0])
                log(logger, "catalogue update rows rejected", file=path.name, rows=len(checked.rejected),
                    first=first, level=logging.WARNING)  # fmt: skip
            if len(checked.rows):
                parts.append(checked.rows)
        return (pd.concat(parts, ignore_index=True) if parts else None), rejected

    def swap(self, built: Built) -> None:
        """Serve ``built``: every reference replaced while no request is in flight."""
        r = self.ranker
        rules = RequestRules(
            r.settings, built.catalog.row_of, Listed(built.catalog.row_of, built.retriever.listed)
        )
        with self.lock.writing():
            r.features.catalogue_update(
                built.appended["item_id"].astype(str).tolist(), built.appended, built.changed
            )
            r.catalog = r.scoring.catalog = built.catalog
            r.experiment.use_catalog(built.catalog)
            r.retriever, r.feed, r.vocab = built.retriever, built.feed, built.vocab
            r.served.item_ids = built.catalog.item_ids
            r.request_rules = rules
        r.scoring.prepare()  # the fast path's item arrays, here rather than in the next request
        r.experiment.prepare()

    def listed_items(self) -> int:
        listed = self.ranker.retriever.listed
        return len(self.ranker.catalog) if listed is None else int(listed.sum())
