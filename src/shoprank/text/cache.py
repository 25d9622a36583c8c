"""Embedding cache: each (model, max_length, text) is encoded once, then read back.

Usage (what the features step does)::

    encoder = load_encoder(settings)                       # settings: config.Text
    cache = EmbeddingCache(settings.cache_dir, encoder.key)
    vecs = cache.embed(list_of_texts, encoder)             # (n, dim) float32, input order

or in one line, ``embed(list_of_texts, encoder, settings.cache_dir)``. Keep one
``EmbeddingCache`` per process and folder: it reads the folder once, then answers
lookups from memory and only touches disk again to append new vectors (or, when some
texts are missing, to pick up shards other processes wrote meanwhile).

Layout, one folder per model key (``encoder.key`` names the weights, the pooling and
``max_length``, so a different model or truncation never reuses vectors)::

    <cache_dir>/<model slug>-<hash of the key>/
        meta.json                          {"format": 1, "model_key": ..., "dim": ...}
        shard-<time_ns>-<uuid>.parquet     key: binary(16), text: string,
                                           vector: fixed_size_list<float32>[dim]

A text's key is a 128-bit BLAKE2b digest of its UTF-8 bytes, keyed with the model
key: the hash of (model identity, max_length, text). The set of shard files *is* the
index. A shard is written to a hidden temporary file, fsynced and renamed into place,
so readers (in this or any other process) see whole shards or nothing; concurrent
writers each add their own shards, and a text two of them encoded at once is simply
stored twice (the first copy wins on read; :meth:`EmbeddingCache.compact` drops it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from itertools import repeat
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shoprank.logs import log

FORMAT = 1
SHARD_GLOB = "shard-*.parquet"
STALE_TMP_S = 3600  # a temporary file this old belongs to a writer that died
logger = logging.getLogger(__name__)


class Encoder(Protocol):
    """What the cache needs from an encoder (``TextEncoder`` is one)."""

    key: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def folder_name(model_key: str) -> str:
    """A file-system-safe folder name that is unique per model key."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_key).strip("-.")[:80] or "model"
    return f"{slug}-{hashlib.blake2b(model_key.encode(), digest_size=6).hexdigest()}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write via ``write(file)`` to a hidden temp file, fsync, then rename onto ``path``."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with tmp.open("wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _keys_of(column: pa.ChunkedArray) -> list[bytes]:
    """A binary(16) column -> list of 16-byte keys, without a Python object per cell on the way."""
    out: list[bytes] = []
    for chunk in column.chunks:
        raw = np.frombuffer(chunk.buffers()[1], dtype="V16")[chunk.offset : chunk.offset + len(chunk)]
        out.extend(raw.tolist())  # V16 -> bytes, exact (unlike S16, which drops trailing NULs)
    return out


class EmbeddingCache:
    """Vectors of one model key, stored under ``cache_dir``; see the module docstring."""

    def __init__(self, cache_dir: Path | str, model_key: str, flush_every: int = 4096):
        if flush_every < 1:
            raise ValueError(f"flush_every must be positive, got {flush_every}")
        self.model_key = model_key
        self.root = Path(cache_dir) / folder_name(model_key)
        self.flush_every = flush_every  # texts per encode call and per shard: a crash loses at most this
        self.dim: int | None = None
        self._salt = hashlib.blake2b(model_key.encode(), digest_size=32).digest()
        self._rows: dict[bytes, int] = {}  # key -> row of self._buf
        self._buf = np.empty((0, 0), dtype=np.float32)  # (capacity, dim); rows [0, len) are used
        self._shards: set[str] = set()  # shard files already read
        self._opened = False

    def __len__(self) -> int:
        self._open()
        return len(self._rows)

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.root)!r}, vectors={len(self._rows)})"

    # -- public -----------------------------------------------------------------------
    def text_keys(self, texts: Sequence[str]) -> list[bytes]:
        """The 16-byte cache key of each text (a keyed BLAKE2b, so it is model specific)."""
        base = hashlib.blake2b(digest_size=16, key=self._salt)

        def one(text: str) -> bytes:
            h = base.copy()  # copying the keyed state is cheaper than re-keying per text
            h.update(text.encode("utf-8", "surrogatepass"))
            return h.digest()

        return [one(t) for t in texts]

    def embed(self, texts: Sequence[str], encoder: Encoder) -> np.ndarray:
        """Vectors of ``texts`` -> (len(texts), dim) float32 in input order.

        Cached texts are read from memory; the missing ones are deduplicated, encoded
        ``flush_every`` at a time and each chunk is appended durably before the next.
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("embed() takes a sequence of str")
        if encoder.key != self.model_key:
            raise ValueError(
                f"encoder {encoder.key!r} does not match this cache's model key {self.model_key!r}"
            )
        self._open()
        if self.dim is not None and encoder.dim != self.dim:
            raise ValueError(f"encoder dim {encoder.dim} != cached dim {self.dim} for {self.model_key!r}")
        start = time.perf_counter()
        keys = self.text_keys(texts)
        rows = self._lookup(keys)  # (n,) int64, -1 = missing
        n_hits = int((rows >= 0).sum())
        if n_hits < len(keys):
            self._refresh()  # another process may have encoded some of them meanwhile
            rows = self._lookup(keys)
        missing = {keys[i]: texts[i] for i in np.flatnonzero(rows < 0).tolist()}  # unique, first-seen order
        todo_keys, todo_texts = list(missing), list(missing.values())
        for s in range(0, len(todo_keys), self.flush_every):
            chunk = todo_texts[s : s + self.flush_every]
            vecs = np.asarray(encoder.encode(chunk), dtype=np.float32)
            if vecs.shape != (len(chunk), encoder.dim):
                raise ValueError(f"encoder returned shape {vecs.shape}, expected {(len(chunk), encoder.dim)}")
            self._append(todo_keys[s : s + self.flush_every], chunk, vecs)
        if todo_keys:
            rows = self._lookup(keys)
            if (rows < 0).any():  # fancy indexing with -1 would silently return the last row
                raise RuntimeError(f"{self.root}: vectors missing right after encoding them")
        dim = self.dim if self.dim is not None else encoder.dim
        out = self._buf[rows] if len(keys) else np.empty((0, dim), dtype=np.float32)  # fancy index: a copy
        log(
            logger,
            "embed",
            level=logging.INFO if todo_keys else logging.DEBUG,  # pure hits are routine
            texts=len(keys),
            hits=n_hits,
            encoded=len(todo_keys),
            seconds=round(time.perf_counter() - start, 4),
        )
        return out

    def compact(self) -> int:
        """Merge all shards into one, dropping duplicate keys; returns how many were merged.

        Safe while others read or write: the merged shard is in place before the old
        ones are removed, and shards that appear meanwhile are left alone.
        """
        names = sorted(p.name for p in self.root.glob(SHARD_GLOB))
        self._remove_stale_tmp()
        if len(names) < 2:
            return len(names)
        table = pa.concat_tables([pq.read_table(self.root / n) for n in names])
        first: dict[bytes, int] = {}
        for i, key in enumerate(_keys_of(table.column("key"))):
            first.setdefault(key, i)
        merged = self._write_shard(table.take(pa.array(sorted(first.values()), pa.int64())))
        for name in names:
            (self.root / name).unlink(missing_ok=True)
        _fsync_dir(self.root)
        self._shards = (self._shards - set(names)) | {merged}
        return len(names)

    # -- internals ---------------------------------------------------------------------
    def _lookup(self, keys: list[bytes]) -> np.ndarray:
        # map() over dict.get runs in C: no Python frame per text
        return np.fromiter(map(self._rows.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))

    def _open(self) -> None:
        if not self._opened:
            meta = self.root / "meta.json"
            if meta.is_file():
                info = json.loads(meta.read_text())
                if info.get("format") != FORMAT or info.get("model_key") != self.model_key:
                    raise ValueError(f"{meta}: written for {info}, not format {FORMAT} of {self.model_key!r}")
                self.dim = int(info["dim"])
            self._refresh()
            self._opened = True

    def _refresh(self) -> None:
        """Read shards that appeared since the last look (written by this or another process)."""
        if not self.root.is_dir():
            return
        for name in sorted(p.name for p in self.root.glob(SHARD_GLOB)):
            if name in self._shards:
                continue
            try:
                table = pq.read_table(self.root / name, columns=["key", "vector"])
            except FileNotFoundError:  # compacted away meanwhile; its rows are in the merged shard
                continue
            dim = table.schema.field("vector").type.list_size
            vecs = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
            self._add(_keys_of(table.column("key")), vecs)
            self._shards.add(name)

    def _add(self, keys: list[bytes], vecs: np.ndarray) -> None:
        """Put new vectors in memory: (m,) keys, (m, dim) vectors; known keys are skipped."""
        if self.dim is None:
            self.dim = vecs.shape[1]
        if vecs.shape[1] != self.dim:
            raise ValueError(f"{self.root}: vectors of dim {vecs.shape[1]} in a cache of dim {self.dim}")
        new = [i for i, k in enumerate(keys) if k not in self._rows]
        n, m = len(self._rows), len(new)
        if n + m > self._buf.shape[0] or self._buf.shape[1] != self.dim:
            grown = np.empty((max(2 * self._buf.shape[0], n + m, 1024), self.dim), dtype=np.float32)
            if n:  # capacity doubles, so appending costs amortised O(rows added)
                grown[:n] = self._buf[:n]
            self._buf = grown
        self._buf[n : n + m] = vecs[new]
        self._rows.update(zip((keys[i] for i in new), range(n, n + m), strict=True))

    def _append(self, keys: list[bytes], texts: list[str], vecs: np.ndarray) -> None:
        """Store (m,) keys/texts and (m, dim) vectors durably, then in memory."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.dim is None:
            meta = {"format": FORMAT, "model_key": self.model_key, "dim": int(vecs.shape[1])}
            _atomic_write(self.root / "meta.json", lambda fh: fh.write(json.dumps(meta, indent=1).encode()))
        vector = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1), pa.float32()), vecs.shape[1])
        table = pa.table(
            {"key": pa.array(keys, pa.binary(16)), "text": pa.array(texts, pa.string()), "vector": vector}
        )
        self._shards.add(self._write_shard(table))
        self._add(keys, vecs)

    def _write_shard(self, table: pa.Table) -> str:
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        _atomic_write(self.root / name, lambda fh: pq.write_table(table, fh))
        return name

    def _remove_stale_tmp(self) -> None:
        for tmp in self.root.glob(".tmp-*"):
            try:
                if time.time() - tmp.stat().st_mtime > STALE_TMP_S:
                    tmp.unlink()
            except FileNotFoundError:
                pass


def embed(texts: Sequence[str], encoder: Encoder, cache_dir: Path | str) -> np.ndarray:
    """One-shot form of ``EmbeddingCache(cache_dir, encoder.key).embed(texts, encoder)``."""
    return EmbeddingCache(cache_dir, encoder.key).embed(texts, encoder)
