"""`shoprank features`: a validated batch -> time-stamped feature tables (Feast's offline store).

One Parquet file per Feast feature view, named after it, each with the entity key and
``event_timestamp``. The leakage rule (history.py): a value stamped at ``t`` is computed
from events strictly before ``t`` only.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shoprank.compute import bounds, map_partitions, partition_count
from shoprank.config import Compute, Features, Text
from shoprank.config_compute import LOCAL
from shoprank.features import items, queries, users
from shoprank.features.batch import read_batch
from shoprank.features.items import Embed
from shoprank.logs import log

logger = logging.getLogger(__name__)

# feature view name -> how its table is computed; features/data_sources.py reads these files
TABLES: dict[str, Callable[..., pd.DataFrame | pa.Table]] = {
    "item_profile": lambda b, s, e: items.item_profile(b),
    "item_stats": lambda b, s, e: items.item_stats(b, s),
    "item_text": lambda b, s, e: items.item_text(b, e),
    "user_profile": lambda b, s, e: users.user_profile(b),
    "user_stats": lambda b, s, e: users.user_stats(b, s),
    "user_history": lambda b, s, e: users.user_history(b, s),
    "query_text": lambda b, s, e: queries.query_text(b, e),
}


def text_embedder(settings: Text, compute: Compute = LOCAL) -> Embed:
    """The real encoder behind the embedding cache: each distinct text is encoded once, ever.

    Loads the BERT weights (seconds); encodes on ``settings.runtime`` (ONNX Runtime on CPU by
    default, see :func:`shoprank.text.onnx_encoder.batch_encoder`), in this process or, with
    ``compute.engine: ray``, in batches of ``compute.embed_batch`` new texts as Ray tasks
    (:class:`PartitionedEncoder`). Tests pass a tiny encoder through :func:`cached_embedder`.
    """
    encoder = PartitionedEncoder(settings, compute)
    return cached_embedder(encoder, settings.cache_dir, encoder.flush_every)


_LOADED: dict[tuple[Text, str], Any] = {}  # this process's encoder, by (settings, model key)


def _load(settings: Text) -> Any:
    from shoprank.text import load_encoder
    from shoprank.text.onnx_encoder import batch_encoder

    encoder = batch_encoder(load_encoder(settings), settings.runtime, settings.cache_dir)
    _LOADED.clear()  # one encoder per process: the last one loaded
    _LOADED[(settings, encoder.key)] = encoder
    return encoder


def encode_batch(texts: list[str], settings: Text, key: str) -> np.ndarray:
    """Vectors of one batch of texts by the encoder ``key`` names: the unit ``compute.engine``
    distributes. A Ray worker loads the encoder on its first batch and keeps it."""
    encoder = _LOADED.get((settings, key))
    if encoder is None:
        encoder = _load(settings)
    if encoder.key != key:
        raise ValueError(
            f"text encoder {encoder.key!r} loaded here, {key!r} expected: the nodes' weights differ"
        )
    return np.asarray(encoder.encode(list(texts)), dtype=np.float32)


class PartitionedEncoder:
    """An encoder (``key``, ``dim``, ``encode``) whose ``encode`` maps :func:`encode_batch`
    over batches of ``compute.embed_batch`` texts on ``compute.engine`` (one batch: local)."""

    def __init__(self, settings: Text, compute: Compute):
        encoder = _load(settings)  # its key names the cache's folder; on local it also encodes
        self.key, self.dim = encoder.key, encoder.dim
        self.settings, self.compute = settings, compute
        # texts per call (and per cache shard): a wave of batches, one per CPU of the cluster
        tasks = 1 if compute.engine == "local" else partition_count(compute, 1 << 30)
        self.flush_every = max(compute.embed_batch * tasks, 4096)

    def encode(self, texts: list[str]) -> np.ndarray:
        n = 1 if self.compute.engine == "local" else -(-len(texts) // self.compute.embed_batch)
        parts = [texts[lo:hi] for lo, hi in bounds(len(texts), n)]
        shared = (self.settings, self.key)
        return np.concatenate(map_partitions(self.compute, encode_batch, parts, shared, what="text encoding"))


def cached_embedder(encoder: Any, cache_dir: Path | str, flush_every: int = 4096) -> Embed:
    """``texts -> vectors`` through an :class:`~shoprank.text.EmbeddingCache` of ``encoder``."""
    from shoprank.text import EmbeddingCache

    cache = EmbeddingCache(cache_dir, encoder.key, flush_every=flush_every)
    return lambda texts: cache.embed(texts, encoder)


def _as_arrow(table: pd.DataFrame | pa.Table) -> pa.Table:
    return table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)


def build_features(batch_dir: Path | str, out_dir: Path | str, settings: Features, embed: Embed) -> dict:
    """Compute every feature table of the batch in ``batch_dir`` and write them to ``out_dir``.

    ``embed`` maps texts to (n, dim) float32 vectors (use :func:`text_embedder`). Tables
    are staged in a temporary folder and moved into place only when all are written.
    Returns ``{"tables": {view: path}, "rows": {view: n}, "seconds": {...}, ...}``.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    batch = read_batch(batch_dir)
    seconds: dict[str, float] = {"read": round(time.perf_counter() - start, 3)}
    log(
        logger,
        "batch read",
        impressions=len(batch.impressions),
        items=len(batch.catalog),
        users=len(batch.users),
        snapshots=batch.timeline.n_days + 1,
        seconds=seconds["read"],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".incoming-", dir=out_dir))
    rows: dict[str, int] = {}
    try:
        for name, compute in TABLES.items():
            t0 = time.perf_counter()
            table = _as_arrow(compute(batch, settings, embed))
            pq.write_table(table, stage / f"{name}.parquet")
            rows[name], seconds[name] = table.num_rows, round(time.perf_counter() - t0, 3)
            log(logger, "feature table", table=name, rows=table.num_rows, seconds=seconds[name])
            del table
        paths = {}
        for name in TABLES:
            os.replace(stage / f"{name}.parquet", out_dir / f"{name}.parquet")
            paths[name] = str(out_dir / f"{name}.parquet")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    seconds["total"] = round(time.perf_counter() - start, 3)
    log(logger, "features built", out=str(out_dir), seconds=seconds["total"])
    stamps = batch.timeline.stamps
    return {
        "tables": paths,
        "rows": rows,
        "seconds": seconds,
        "impressions": len(batch.impressions),
        "snapshots": len(stamps),
        "first_snapshot": stamps[0].isoformat(),
        "last_snapshot": stamps[-1].isoformat(),
    }
