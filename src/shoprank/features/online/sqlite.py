"""The SQLite fetch path: the rows of the requested keys from every view's table, one statement.

The database is opened read-only. Each stored row is numbered by the query with its
place (entity, column) in the result, so placing the rows is one numpy scatter.
"""

from __future__ import annotations

import operator
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from shoprank.features.online.layout import OnlineStoreMissing, _Fetched, _Layout, _sql_name, _View

CHUNK = 4096  # entity keys per SQLite statement, all views' (bound parameters stay far below SQLite's limit)
# SQLite page cache of the reader's connection. SQLite's default is smaller than the pages
# one read of a page of items touches (an index and a table page per entity in each view),
# so every read would evict what the next needs and pay a read() per page. Pages are only
# cached as they are read, so a small store never costs this much memory.
PAGE_CACHE_MIB = 64

_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


class _SQLiteStore(_Layout):
    """Reads of Feast's SQLite online store (a part of :class:`OnlineReader`)."""

    path: Path
    _groups: list[list[_View]]
    _statements: dict[tuple[tuple[int, int], ...], str]
    _lock: threading.Lock
    _conn: sqlite3.Connection | None
    _inode: tuple[int, int]

    def _open_sqlite(self) -> None:
        if not self.path.is_file():
            raise OnlineStoreMissing(
                f"{self.path}: no SQLite online store (run `shoprank materialize` first)"
            )
        uri = f"file:{self.path.as_posix()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=10.0)
        conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_MIB * 1024}")  # KiB when negative
        st = os.stat(self.path)
        self._conn, self._inode = conn, (st.st_dev, st.st_ino)

    def _statement(self, shape: tuple[tuple[int, int], ...]) -> str:
        """The query of a batch: ``shape``, per key group in it, (group, its number of keys, padded).

        Per group a VALUES list of (position, key), parameters ``?1...`` in group order;
        per view of the group the view's rows of those keys (Feast's table, its index on
        ``entity_key``; the keys drive the join), each as ``(cell, value)``: the cell is
        the row's place in the flat array of all grids, ``base + position * width +
        column``, the base a parameter after the keys (one per view, in order). Rows
        with an empty value (a null) are left out. One statement for all views: one
        round trip and one result to place. SQLite allows 500 arms of a UNION ALL and
        32766 parameters: far more than views, and than the keys of a batch (CHUNK, padded).
        """
        sql = self._statements.get(shape)
        if sql is None:
            ctes, arms, param = [], [], 0
            for g, count in shape:
                values = ",".join(f"({i},?{param + i + 1})" for i in range(count))
                ctes.append(f"k{g}(pos, key) AS (VALUES {values})")
                param += count
            for g, _ in shape:
                for view in self._groups[g]:
                    param += 1
                    arms.append(
                        f"SELECT ?{param} + k{g}.pos * {view.width} + {view.column_sql}, t.value "
                        f"FROM k{g} CROSS JOIN {_sql_name(view.table)} AS t ON t.entity_key = k{g}.key "
                        "WHERE length(t.value) > 0"  # an empty value is a null (Feast's reading too)
                    )
            sql = "WITH " + ", ".join(ctes) + " " + " UNION ALL ".join(arms)
            self._statements[shape] = sql
        return sql

    def _fetch_sqlite(self, uniques: dict) -> dict[str, _Fetched]:
        """Feast's rows of the requested keys, placed into one (entities, columns) grid per view.

        The grids are consecutive blocks of one flat object array; the query returns each
        stored row's place in it (:meth:`_statement`), so placing the rows is one numpy
        scatter. A feature the view no longer has (stale rows) lands in a spare column
        that is never read. Up to CHUNK keys per statement, all views in each.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise OnlineStoreMissing(
                f"{self.path}: the SQLite online store is gone (run `shoprank materialize`)"
            ) from None
        keys = [self._keys(views[0], uniques[views[0].name][1]) for views in self._groups]
        bases, size = {}, 0  # each view's block in the flat array
        for g, views in enumerate(self._groups):
            for view in views:
                bases[view.name] = size
                size += len(keys[g]) * view.width
        cells = np.full(size, None, object)
        null = np.ones(size, bool)  # no stored value: no row, or an empty one (left out by the query)
        with self._lock:
            if (st.st_dev, st.st_ino) != self._inode:  # the file was replaced (teardown + materialize)
                assert self._conn is not None
                self._conn.close()
                self._open_sqlite()
            conn = self._conn
            assert conn is not None
            for batch in _batches([len(k) for k in keys]):
                params: list[Any] = []
                for g, start, stop in batch:  # padded with NULL keys (they match nothing) to the shape
                    params += keys[g][start:stop]
                    params += [None] * (_padded(stop - start) - (stop - start))
                params += [bases[v.name] + start * v.width for g, start, _ in batch for v in self._groups[g]]
                sql = self._statement(tuple((g, _padded(stop - start)) for g, start, stop in batch))
                try:
                    rows = conn.execute(sql, params).fetchall()
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):
                        raise self._missing_table(conn) from exc
                    raise
                if rows:
                    at = np.fromiter(map(_FIRST, rows), np.intp, len(rows))
                    cells[at] = np.fromiter(map(_SECOND, rows), object, len(rows))
                    null[at] = False
        out: dict[str, _Fetched] = {}
        for g, views in enumerate(self._groups):
            for view in views:
                block = slice(bases[view.name], bases[view.name] + len(keys[g]) * view.width)
                shape = (len(keys[g]), view.width)
                out[view.name] = (
                    uniques[view.name][0],
                    cells[block].reshape(shape),
                    null[block].reshape(shape),
                )
        return out

    def _missing_table(self, conn: sqlite3.Connection) -> OnlineStoreMissing:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        view = next((v for v in self.views if v.table not in tables), self.views[0])
        return OnlineStoreMissing(
            f"{self.path}: no table {view.table} for view {view.name} (run `shoprank materialize`)"
        )


def _padded(count: int) -> int:
    """The number of keys a statement is prepared for: ``count`` rounded up to a few sizes.

    Requests of varying sizes then share a handful of statements, kept in the connection's
    statement cache, instead of each size paying for SQLite's parsing and planning anew.
    """
    return next((size for size in _SIZES if size >= count), count)


_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, CHUNK)


def _batches(counts: list[int]) -> list[list[tuple[int, int, int]]]:
    """Statements of at most CHUNK keys: per statement, ``(group, start, stop)`` ranges of group keys."""
    batches: list[list[tuple[int, int, int]]] = [[]]
    room = CHUNK
    for g, count in enumerate(counts):
        start = 0
        while start < count:
            if not room:
                batches.append([])
                room = CHUNK
            stop = min(count, start + room)
            batches[-1].append((g, start, stop))
            room -= stop - start
            start = stop
    return [b for b in batches if b]
