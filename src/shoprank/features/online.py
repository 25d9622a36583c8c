"""A fast reader of Feast's online store: the values ``online_features`` returns, without Feast's read path.

Serving reads one feature service for one user, one query and up to a few hundred items
per request. Feast's ``get_online_features(...).to_df()`` spends tens of milliseconds
in Python on that (protobuf messages per value, a response proto, per-value type
conversion). :class:`OnlineReader` reads the *same* online store that ``shoprank
materialize`` loads (no second copy of the features, no cache of values: every call
queries the store, so a new materialisation is visible to the next call) and decodes
the stored values column by column with numpy::

    from shoprank.features import OnlineReader

    reader = OnlineReader(params.features, "ctr_model_v1")   # resolves the service once
    df = reader.read({"user_id": ["u1"] * 3, "query_id": ["q_..."] * 3, "item_id": ["a", "b", "c"]})
    df = reader.read([{"user_id": "u1", "query_id": "q_...", "item_id": "a"}, ...])  # Feast's row form
    cols = reader.read_columns(rows)                          # {column: numpy array}, no DataFrame
    reader.close()                                            # also a context manager

What it returns equals ``online_features(store, service, rows)``: one row per entity
row, in order; the join keys that were given (in the order given), then every feature
of the service; nulls where the store has no value (an unknown key reads as null in
every column of its views). Dtypes follow Feast's ``to_df()``: int features are int64,
or float64 with NaN when some rows are null; float features float64; strings and lists
object; a column that is null in every row is object ``None``, as in Feast. Two
deliberate differences:

- column order: Feast orders a view's features by a Python ``set`` (it changes from
  process to process); here they follow the feature service, view by view, feature by
  feature. Select columns by name, as with Feast.
- numeric arrays (embeddings) come back as numpy arrays (``float32`` for
  ``Array(Float32)``), not Python lists of floats; the values are identical. String
  arrays (``recent_items``) are lists of ``str`` as in Feast.

How: at construction the feature service is resolved from the registry once (views,
features, types, join keys, table names), the SQLite database is opened read-only (or
a Redis client is made from the same settings Feast uses). Entity keys are serialised
like Feast (``serialize_entity_key`` layout, checked against Feast's function at
construction); SQLite: one statement reads the rows of the requested keys from every
view's table, each row numbered by the query with its place (entity, column) in the
result; Redis: one pipeline of ``HMGET`` per entity (all the service's views of an
entity share one Redis hash: Feast's key layout, serialised key + project name, fields
``mmh3("<view>:<feature>")``). Values are Feast ``ValueProto`` bytes, decoded per
column: fixed-width floats and embedding matrices with ``np.frombuffer``, varint ints
vectorised, strings by slicing (memoised by their bytes); anything unusual falls back to
protobuf parsing and Feast's own conversion, value by value.

Errors: :class:`OnlineStoreMissing` (a :class:`FeatureRepoError`) when the registry
lacks the service or the online store has not been loaded: run ``shoprank
materialize``.
"""

from __future__ import annotations

import operator
import os
import sqlite3
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shoprank.config import Features
from shoprank.features.store import FeatureRepoError, open_store

CHUNK = 4096  # entity keys per SQLite statement, all views' (bound parameters stay far below SQLite's limit)
# SQLite page cache of the reader's connection. SQLite's default (2 MiB) is smaller than the
# pages one 100-item read touches (three item views, an index and a table page per entity),
# so every read evicted what the next needed and paid a read() per page, which roughly
# doubled the SQL time of a read (bench/bench_features.py). Pages are only cached as
# they are read, so a small store never costs this much memory.
PAGE_CACHE_MIB = 64

# ValueProto wire tags of the fast paths (field number << 3 | wire type)
_TAG_STRING = 0x12  # string_val = 2, length-delimited
_TAG_INT32 = 0x18  # int32_val = 3, varint
_TAG_INT64 = 0x20  # int64_val = 4, varint
_TAG_DOUBLE = 0x29  # double_val = 5, 64-bit
_TAG_FLOAT = 0x35  # float_val = 6, 32-bit
_TAG_BOOL = 0x38  # bool_val = 7, varint
_TAG_DOUBLE_LIST = b"\x7a"  # double_list_val = 15
_TAG_FLOAT_LIST = b"\x82\x01"  # float_list_val = 16

# value kind per Feast ValueType name: how a column is decoded
_KINDS = {
    "FLOAT": "float32",
    "DOUBLE": "float64",
    "INT64": "int64",
    "INT32": "int32",
    "BOOL": "bool",
    "STRING": "string",
    "FLOAT_LIST": "float32_list",
    "DOUBLE_LIST": "float64_list",
    "STRING_LIST": "string_list",
    "INT64_LIST": "int64_list",
    "INT32_LIST": "int32_list",
}


class OnlineStoreMissing(FeatureRepoError):
    """The online store (or the service, or a view's table) is not there: not applied or materialised."""


@dataclass
class _Column:
    name: str  # output column (the feature name: Feast's full_feature_names=False)
    feature: str  # feature name in the store
    kind: str  # a _KINDS value, or "generic"
    value_type: Any  # Feast ValueType (the generic path hands it to Feast's converter)


@dataclass
class _View:
    name: str  # the feature view
    table: str  # SQLite table / Redis field prefix (Feast's versioned name)
    join_keys: list[str]  # store join keys, Feast's order
    row_keys: list[str]  # the entity-row columns they are read from (projection join_key_map)
    key_types: list[Any]  # Feast ValueType of each join key
    columns: list[_Column]

    def __post_init__(self) -> None:
        self.width = len(self.columns) + 1  # + a spare column for stored features the service does not read
        # SQLite: the column of a stored row, computed by the query (a small int per row is cheaper
        # to return and to place than the feature name's str and a dict lookup)
        whens = " ".join(f"WHEN {_sql_text(c.feature)} THEN {j}" for j, c in enumerate(self.columns))
        self.column_sql = f"CASE t.feature_name {whens} ELSE {self.width - 1} END"
        groups: dict[str, list[int]] = {}
        self.batches: list[list[int]] = []  # column indices decoded together: scalars by kind
        for j, c in enumerate(self.columns):
            if c.kind in _BATCHED:
                if c.kind not in groups:
                    groups[c.kind] = []
                    self.batches.append(groups[c.kind])
                groups[c.kind].append(j)
            else:
                self.batches.append([j])
        # the same as index arrays (numpy indexing with a list first tries it as an integer)
        self.batch_index = [np.asarray(js, np.intp) for js in self.batches]


def _sql_text(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _sql_name(name: str) -> str:
    """``name`` as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


class _Decoder:
    """Column decoders: a tuple of stored ``ValueProto`` bytes (``None``/empty = null) -> values."""

    def __init__(self) -> None:
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type

        self._value = Value
        self._to_python = feast_value_type_to_python_type
        self._strings: dict[Any, str | None] = dict(_NULLS)  # string value per stored bytes (memo)

    # -- the slow, exact path: protobuf + Feast's conversion, value by value ----------------
    def parse(self, blob: bytes | None) -> Any:
        if not blob:
            return None
        msg = self._value()  # a message per value: readers share the decoder across threads
        msg.ParseFromString(blob)
        return self._to_python(msg)

    # -- fast paths -----------------------------------------------------------------------
    @staticmethod
    def _fixed(present: Sequence[bytes], tag: int, width: int, dtype: str) -> np.ndarray | None:
        """Fixed-width scalars (``tag`` + ``width`` bytes little endian), or None if any differs."""
        size = width + 1
        buf = b"".join(present)
        if len(buf) != size * len(present):
            return None
        raw = np.frombuffer(buf, np.uint8).reshape(-1, size)
        if (raw[:, 0] != tag).any():
            return None
        return np.ascontiguousarray(raw[:, 1:]).view(dtype).ravel()

    @staticmethod
    def _varints(present: Sequence[bytes], tag: int) -> np.ndarray | None:
        """Varint scalars (``tag`` + varint), vectorised; None if any value is not exactly that.

        A few values (one user's, one query's) are read in a loop: each numpy call costs
        more than decoding a varint in Python. Many of one length: a (values, bytes)
        matrix, its 7-bit groups shifted into place and or-ed together; of mixed lengths:
        the same over the joined bytes, summed per value.
        """
        if len(present) <= _FEW:
            out = []
            for b in present:
                if not 2 <= len(b) <= 11 or b[0] != tag:
                    return None
                try:
                    value, end = _read_varint(b, 1)
                except IndexError:  # the last byte asks for more
                    return None
                if end != len(b):
                    return None
                out.append(value & 0xFFFF_FFFF_FFFF_FFFF)  # 64 bits, as below
            return np.array(out, np.uint64).view(np.int64)
        lens = np.fromiter(map(len, present), np.intp, len(present))
        if (lens < 2).any() or (lens > 11).any():
            return None
        buf = np.frombuffer(b"".join(present), np.uint8)
        width = len(present[0])
        if len(buf) == width * len(present) and (lens == width).all():  # one length: a matrix
            raw = buf.reshape(-1, width)
            if (raw[:, 0] != tag).any():
                return None
            payload = raw[:, 1:]
            if width == 2:  # one byte each (values below 128): the common case of counts
                return None if (payload >= 0x80).any() else payload[:, 0].astype(np.int64)
            if not (payload[:, :-1] >= 0x80).all() or (payload[:, -1] >= 0x80).any():
                return None  # continuation bits must be set on all but each value's last byte
            parts = (payload & 0x7F).astype(np.uint64) << _SHIFTS[: width - 1]
            return np.bitwise_or.reduce(parts, axis=1).view(np.int64)
        starts = np.cumsum(lens) - lens
        if (buf[starts] != tag).any():
            return None
        keep = np.ones(len(buf), bool)
        keep[starts] = False
        payload = buf[keep]
        plen = lens - 1
        pstart = np.cumsum(plen) - plen
        more = (payload & 0x80) != 0
        if more[pstart + plen - 1].any() or int(more.sum()) != len(payload) - len(present):
            return None  # continuation bits must be set on all but each value's last byte
        pos = np.arange(len(payload)) - np.repeat(pstart, plen)
        parts = (payload & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64)
        return np.add.reduceat(parts, pstart).view(np.int64)

    @staticmethod
    def _packed_matrix(present: Sequence[bytes], tag: bytes, width: int, dtype: str) -> np.ndarray | None:
        """Equal-length packed arrays (float/double lists) as one ``(rows, length)`` matrix."""
        first = present[0]
        if not first.startswith(tag):
            return None
        try:
            outer, pos = _read_varint(first, len(tag))
            if pos + outer != len(first) or first[pos] != 0x0A:
                return None
            inner, pos = _read_varint(first, pos + 1)
        except IndexError:
            return None
        size = len(first)
        if pos + inner != size or inner % width or inner == 0:
            return None
        buf = b"".join(present)
        if len(buf) != size * len(present):
            return None
        raw = np.frombuffer(buf, np.uint8).reshape(-1, size)
        if len(present) > 1 and (raw[:, :pos] != raw[0, :pos]).any():
            return None
        return np.ascontiguousarray(raw[:, pos:]).view(dtype)

    def _numeric(self, present: Sequence[bytes], kind: str) -> np.ndarray:
        """Numeric scalars or equal-length arrays of the non-null values (fast path, else protobuf)."""
        fast: np.ndarray | None = None
        if kind == "float32":
            fast = self._fixed(present, _TAG_FLOAT, 4, "<f4")
        elif kind == "float64":
            fast = self._fixed(present, _TAG_DOUBLE, 8, "<f8")
        elif kind == "int64":
            fast = self._varints(present, _TAG_INT64)
        elif kind == "int32":
            fast = self._varints(present, _TAG_INT32)
            fast = None if fast is None else fast.astype(np.int32).astype(np.int64)  # sign-extended
        elif kind == "bool":
            fast = self._varints(present, _TAG_BOOL)
            fast = None if fast is None else fast.astype(bool)
        elif kind == "float32_list":
            fast = self._packed_matrix(present, _TAG_FLOAT_LIST, 4, "<f4")
        elif kind == "float64_list":
            fast = self._packed_matrix(present, _TAG_DOUBLE_LIST, 8, "<f8")
        if fast is not None:
            return fast
        values = [self.parse(b) for b in present]
        if kind in _LISTS:  # arrays of unequal length (or unusual bytes): one array per value
            arr = np.empty(len(values), object)
            for i, v in enumerate(values):
                arr[i] = None if v is None else np.asarray(v, dtype=_LISTS[kind])
            return arr
        dtype = {"bool": bool, "int64": np.int64, "int32": np.int64}.get(kind, np.float64)
        if any(v is None for v in values):  # a value of another type: keep Feast's Python values
            return _objects(values)
        return np.asarray(values, dtype=dtype)

    def strings(self, blobs: list[bytes | None]) -> list[str | None]:
        """String values, None for nulls.

        String features repeat (categories, brands, colours): the decoding is memoised by
        the stored bytes, a pure function of them, so when every value was seen before,
        one C-level dict lookup per value is all. The memo is emptied when it grows past
        ``STRING_MEMO`` entries.
        """
        memo = self._strings
        try:
            return list(map(memo.__getitem__, blobs))
        except KeyError:  # a value not seen before
            pass
        if len(memo) > STRING_MEMO:
            memo.clear()
            memo.update(_NULLS)
        out: list[str | None] = []
        for b in blobs:
            value: Any = memo.get(b, _MISS)
            if value is _MISS:
                if not b:  # null (the memo may be being emptied by another thread)
                    value = None
                elif len(b) > 1 and b[0] == _TAG_STRING and b[1] < 0x80 and len(b) == b[1] + 2:
                    value = b[2:].decode()
                else:
                    value = self.parse(b)
                if value is None or type(value) is str:  # immutable: safe to hand out again
                    memo[b] = value
            out.append(value)
        return out

    def decode(
        self, blobs: np.ndarray, col: _Column, null: np.ndarray | None = None
    ) -> tuple[Any, np.ndarray | None]:
        """``(values, null mask)``, one value per blob.

        ``values``: a numpy array (numeric scalars; a 2-d matrix for equal-length numeric
        arrays; arbitrary where the mask says null), or a list of Python values with None
        for nulls (mask None then). ``null``: which blobs are null, when the caller knows
        (computed here otherwise).
        """
        kind = col.kind
        if kind == "string":
            return self.strings(blobs.tolist()), None
        if kind not in _NUMERIC:
            return [self.parse(b) for b in blobs.tolist()], None
        if null is None:
            null = np.fromiter(map(operator.not_, blobs), bool, len(blobs))
        has_null = bool(null.any())
        present = (blobs[~null] if has_null else blobs).tolist()  # a list: iterated more cheaply
        if not present:
            return [None] * len(blobs), None
        values = self._numeric(present, kind)
        if has_null:  # spread the non-null values over all entities
            if values.dtype == object:
                full = np.empty(len(blobs), object)
                full[np.flatnonzero(~null)] = values
            else:
                full = np.zeros((len(blobs), *values.shape[1:]), values.dtype)
                full[~null] = values
            values = full
        return values, null


_FEW = 16  # values decoded in a Python loop rather than with numpy
_SHIFTS = 7 * np.arange(10, dtype=np.uint64)  # of the 7-bit groups of a varint value
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)
_MISS = object()  # not in the string memo
_NULLS = {None: None, b"": None}  # stored nulls: no row, or an empty value
STRING_MEMO = 100_000  # string values kept by _Decoder (a few MiB at most)

_LISTS = {
    "float32_list": np.float32,
    "float64_list": np.float64,
    "int64_list": np.int64,
    "int32_list": np.int64,
}
_SCALARS = {"float32", "float64", "int64", "int32", "bool"}
_BATCHED = _SCALARS | {"string"}  # decoded a view's columns of one kind at a time
_NUMERIC = {"float32", "float64", "int64", "int32", "bool", "float32_list", "float64_list"}


# what a read fetches per view: (row -> unique entity index or None, grid of stored bytes, null mask or None)
_Fetched = tuple[np.ndarray | None, np.ndarray, np.ndarray | None]


class OnlineReader:
    """Online values of one feature service, read straight from Feast's online store.

    ``settings``: the ``features`` section of params.yaml (``repo``, ``online_store``,
    ``redis_url``); ``service``: a feature service of the repo's registry. See the module
    docstring for what :meth:`read` returns. Thread-safe; reuse one reader per process.
    """

    def __init__(self, settings: Features, service: str = "ctr_model_v1"):
        from feast.infra.key_encoding_utils import serialize_entity_key

        store = open_store(settings)
        config = store.config
        self.service = service
        self.project: str = config.project
        self.store_type: str = config.online_store.type
        self._key_version: int = config.entity_key_serialization_version
        self._serialize = serialize_entity_key
        try:
            fs = store.get_feature_service(service)
        except Exception as exc:
            if type(exc).__name__ != "FeatureServiceNotFoundException":
                raise
            raise OnlineStoreMissing(
                f"feature service {service!r} is not in the registry of {settings.repo}: "
                "run `shoprank materialize` first"
            ) from exc
        self.views = self._resolve(store, fs)
        never = [v.name for v in self.views if not store.get_feature_view(v.name).materialization_intervals]
        if never:
            raise OnlineStoreMissing(
                f"views {never} of {service!r} were never materialised into the {self.store_type} "
                "online store: run `shoprank materialize`"
            )
        self.columns = [c.name for v in self.views for c in v.columns]
        if len(set(self.columns)) != len(self.columns):
            raise FeatureRepoError(f"feature service {service!r} has two features of the same name")
        self.join_keys = list(dict.fromkeys(k for v in self.views for k in v.row_keys))  # required
        # views of the same entities (same join keys, read from the same entity-row columns):
        # their keys are made once per read, and SQLite reads them with one VALUES list
        groups: dict[tuple, list[_View]] = {}
        for v in self.views:
            groups.setdefault((tuple(v.join_keys), tuple(v.row_keys)), []).append(v)
        self._groups = list(groups.values())
        self._statements: dict[tuple[tuple[int, int], ...], str] = {}  # SQLite query per batch shape
        self._entity_keys |= set(self.join_keys)  # returned when given, as Feast does: any entity's key
        self._decoder = _Decoder()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._redis: Any = None
        if self.store_type == "sqlite":
            path = Path(config.online_store.path)
            self.path = path if path.is_absolute() else Path(config.repo_path or ".") / path
            self._open_sqlite()
        elif self.store_type == "redis":
            self._setup_redis(config)
        else:
            raise FeatureRepoError(f"online store {self.store_type!r}: OnlineReader reads sqlite or redis")
        self._check_key_encoding()

    # -- construction ----------------------------------------------------------------------
    def _resolve(self, store: Any, fs: Any) -> list[_View]:
        from feast.infra.online_stores.helpers import compute_table_id, compute_versioned_name

        versioning = bool(getattr(store.config.registry, "enable_online_feature_view_versioning", False))
        entities = {e.name: e for e in store.list_entities()}
        self._entity_keys = {e.join_key for e in entities.values()}
        views = []
        for proj in fs.feature_view_projections:
            view = store.get_feature_view(proj.name)
            key_types = []
            for jk in view.join_keys:
                ent = next((e for e in entities.values() if e.join_key == jk), None)
                key_types.append(ent.value_type if ent is not None else None)
            columns = [
                _Column(
                    name=f.name,
                    feature=f.name,
                    kind=_KINDS.get(f.dtype.to_value_type().name, "generic"),
                    value_type=f.dtype.to_value_type(),
                )
                for f in proj.features
            ]
            if self.store_type == "redis":
                table = compute_versioned_name(view, versioning)
            else:
                table = compute_table_id(store.config.project, view, versioning)
            views.append(
                _View(
                    name=view.name,
                    table=table,
                    join_keys=list(view.join_keys),
                    row_keys=[proj.join_key_map.get(k, k) for k in view.join_keys],
                    key_types=key_types,
                    columns=columns,
                )
            )
        return views

    def _check_key_encoding(self) -> None:
        """The fast key encoding must give Feast's bytes; views with other key types use Feast's."""
        for view in self.views:
            if all(t is not None and t.name == "STRING" for t in view.key_types) and len(view.join_keys) == 1:
                sample = ["é-key_0"]
                if self._fast_keys(view, [tuple(sample)]) != self._feast_keys(view, [tuple(sample)]):
                    raise FeatureRepoError(f"entity key encoding of {view.name} differs from Feast's")

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

    def _setup_redis(self, config: Any) -> None:
        from feast.infra.online_stores.helpers import _mmh3
        from feast.infra.online_stores.redis import RedisOnlineStore

        self._redis = RedisOnlineStore()._get_client(config.online_store)  # Feast's own client setup
        self._project_bytes = config.project.encode("utf-8")
        # one HMGET per entity: the fields of every view keyed by the same join keys
        self._redis_groups: dict[tuple[str, ...], list[tuple[_View, int]]] = {}
        self._redis_fields: dict[tuple[str, ...], list[bytes]] = {}
        for view in self.views:
            group = tuple(view.join_keys)
            fields = self._redis_fields.setdefault(group, [])
            self._redis_groups.setdefault(group, []).append((view, len(fields)))
            fields.extend(_mmh3(f"{view.table}:{c.feature}") for c in view.columns)
            fields.append(f"_ts:{view.table}".encode())

    # -- entity keys -------------------------------------------------------------------------
    def _fast_keys(self, view: _View, values: list[tuple]) -> list[bytes]:
        jk = view.join_keys[0].encode("utf8")
        prefix = struct.pack("<III", 1, 2, len(jk)) + jk + struct.pack("<I", 2)
        pack = struct.Struct("<I").pack
        encoded = [v.encode("utf8") for (v,) in values]
        return [prefix + pack(len(b)) + b for b in encoded]

    def _feast_keys(self, view: _View, values: list[tuple]) -> list[bytes]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.type_map import python_values_to_proto_values

        cols = [
            python_values_to_proto_values([row[i] for row in values], view.key_types[i])
            for i in range(len(view.join_keys))
        ]
        return [
            self._serialize(
                EntityKey(join_keys=view.join_keys, entity_values=[c[r] for c in cols]),
                entity_key_serialization_version=self._key_version,
            )
            for r in range(len(values))
        ]

    def _keys(self, view: _View, values: list[tuple]) -> list[bytes]:
        fast = (
            len(view.join_keys) == 1
            and view.key_types[0] is not None
            and view.key_types[0].name == "STRING"
            and self._key_version >= 3
            and all(type(v[0]) is str for v in values)
        )
        return self._fast_keys(view, values) if fast else self._feast_keys(view, values)

    # -- reading -------------------------------------------------------------------------------
    def _columnar(self, entity_rows: Any) -> dict[str, list[Any]]:
        if isinstance(entity_rows, Mapping):
            cols = {k: list(v) for k, v in entity_rows.items()}
        else:
            rows = list(entity_rows)
            if not rows:
                raise ValueError("no entity rows")
            keys = list(rows[0])
            try:
                cols = {k: [r[k] for r in rows] for k in keys}
            except KeyError as exc:
                raise ValueError("all entity rows must have the same keys") from exc
        lengths = {len(v) for v in cols.values()}
        if len(lengths) != 1:
            raise ValueError(f"entity columns of different lengths: {sorted(lengths)}")
        missing = [k for k in self.join_keys if k not in cols]
        if missing:
            raise ValueError(f"entity rows lack the join keys {missing} of feature service {self.service!r}")
        return cols

    def read_columns(self, entity_rows: Any) -> dict[str, Any]:
        """The values as ``{column: numpy array}`` (object arrays for strings, lists and nulls).

        ``entity_rows``: a list of ``{join key: value}`` dicts (Feast's form) or one
        ``{join key: [values]}`` dict. Same columns, order and dtypes as :meth:`read`.
        """
        cols = self._columnar(entity_rows)
        n = len(next(iter(cols.values())))
        keys = [k for k in cols if k in self._entity_keys]
        out: dict[str, Any] = {k: _objects(cols[k]) for k in keys}
        if n == 0:
            for c in self.columns:
                out[c] = np.empty(0, object)
            return out
        fetched = self._fetch(cols, n)
        for view in self.views:
            inv, grid, nulls = fetched[view.name]  # nulls: None where decode finds them
            for js, at in zip(view.batches, view.batch_index, strict=True):
                col = view.columns[js[0]]
                null = None if nulls is None else nulls[:, at]
                if col.kind in _BATCHED:
                    arrays = self._batch(col, grid[:, at], null, inv, n)
                else:  # one column
                    decoded = self._decoder.decode(grid[:, js[0]], col, None if null is None else null[:, 0])
                    arrays = [self._assemble(decoded, inv, n, col.kind)]
                for j, arr in zip(js, arrays, strict=True):
                    out[view.columns[j].name] = arr
        return {k: out[k] for k in [*keys, *self.columns]}

    def _batch(self, col: _Column, blobs: np.ndarray, nulls: np.ndarray | None, inv: Any, n: int) -> list:
        """Scalar columns of one kind (``blobs``: unique entities x columns), decoded together.

        One decoding, one expansion to the rows and one conversion for all of them: the
        columns are the rows of a transposed matrix (each contiguous). The result equals
        :meth:`_assemble` column by column, which takes over when numbers have nulls.
        """
        m, k = blobs.shape
        if col.kind == "string":
            values = self._decoder.strings(blobs.ravel().tolist())
            matrix = np.fromiter(values, object, m * k).reshape(m, k)
            dtype: Any = object
        else:
            null = None if nulls is None else nulls.ravel()
            flat, null = self._decoder.decode(blobs.ravel(), col, null)
            if null is None:  # all null
                return [self._assemble(([None] * m, None), inv, n, col.kind) for _ in range(k)]
            matrix, grid_null = flat.reshape(m, k), null.reshape(m, k)
            if inv is not None:
                matrix, grid_null = matrix[inv], grid_null[inv]
            if matrix.dtype == object or grid_null.any():
                return [self._assemble((matrix[:, c], grid_null[:, c]), None, n, col.kind) for c in range(k)]
            dtype = np.float64 if matrix.dtype.kind == "f" else matrix.dtype  # as _assemble's
            inv = None  # applied
        if inv is not None:
            matrix = matrix[inv]
        columns = np.ascontiguousarray(matrix.T, dtype)
        return [columns[c] for c in range(k)]  # (iterating an array ends in a costly IndexError)

    def read(self, entity_rows: Any) -> pd.DataFrame:
        """One row per entity row, in order: the given join keys, then the service's features."""
        return to_frame(self.read_columns(entity_rows))

    def _unique(self, view: _View, cols: dict[str, list[Any]], n: int) -> tuple[np.ndarray | None, list]:
        """Unique entity keys of ``view`` and each row's index into them (None: already unique, in order)."""
        if len(view.row_keys) == 1:
            values: Any = cols[view.row_keys[0]]
            index: dict[Any, Any] = dict.fromkeys(values)  # first-seen order
            uniq = list(zip(index))  # 1-tuples
        else:
            values = list(zip(*(cols[k] for k in view.row_keys), strict=True))
            index = dict.fromkeys(values)
            uniq = list(index)
        if len(uniq) == n:
            return None, uniq
        index = dict(zip(index, range(len(index)), strict=True))
        return np.fromiter(map(index.__getitem__, values), np.intp, n), uniq

    def _fetch(self, cols: dict[str, list[Any]], n: int) -> dict[str, _Fetched]:
        """Per view: (row -> unique index, a (unique entities, columns) grid of stored bytes, nulls).

        The null mask of the grid is None where the store does not tell (Redis: decoding finds them).
        """
        uniques = {}
        for views in self._groups:  # views of the same entities share their unique keys
            unique = self._unique(views[0], cols, n)
            for view in views:
                uniques[view.name] = unique
        if self._redis is not None:
            return self._fetch_redis(uniques)
        return self._fetch_sqlite(uniques)

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

    def _fetch_redis(self, uniques: dict) -> dict[str, _Fetched]:
        """One pipeline: per entity one HMGET of the fields of all its views (Feast's layout)."""
        project = self._project_bytes
        plan = []
        with self._redis.pipeline(transaction=False) as pipe:
            for group, members in self._redis_groups.items():
                view = members[0][0]
                inv, uniq = uniques[view.name]
                keys = self._keys(view, uniq)
                fields = self._redis_fields[group]
                for k in keys:
                    pipe.hmget(k + project, fields)
                plan.append((members, inv, len(keys), len(fields)))
            replies = pipe.execute()
        out: dict[str, _Fetched] = {}
        pos = 0
        for members, inv, count, width in plan:
            grid = np.empty((count, width), object)
            grid[:] = replies[pos : pos + count]
            pos += count
            for view, offset in members:
                out[view.name] = (inv, grid[:, offset : offset + len(view.columns)], None)
        return out

    @staticmethod
    def _assemble(decoded: tuple[Any, np.ndarray | None], inv: np.ndarray | None, n: int, kind: str) -> Any:
        """Unique entities' values -> one value per row, with Feast ``to_df`` dtypes."""
        values, null = decoded
        if null is None:  # Python values, None for null
            if kind == "generic":  # left to pandas' inference, as Feast's to_df does
                return values if inv is None else [values[i] for i in inv]
            arr = _objects(values, kind in _LISTS or kind == "string_list")
            return arr if inv is None else arr[inv]
        if inv is not None:
            values = values[inv]
            null = null[inv]
        has_null = bool(null.any())
        if values.ndim == 2 or values.dtype == object:  # arrays: one object each
            if values.ndim == 2:
                arr = np.empty(n, object)
                for i in range(n):
                    arr[i] = values[i]
            else:
                arr = values.copy() if inv is None else values
            if has_null:
                arr[null] = None
            return arr
        if not has_null:
            return values.astype(np.float64) if values.dtype.kind == "f" else np.ascontiguousarray(values)
        if kind == "bool":
            arr = values.astype(object)
            arr[null] = None
            return arr
        arr = values.astype(np.float64)
        arr[null] = np.nan
        return arr

    def change_token(self) -> tuple | None:
        """A value that changes whenever the store's contents may have: equal tokens mean
        unchanged data. SQLite: the file's identity and ``PRAGMA data_version`` (it moves
        when another connection, e.g. ``shoprank materialize``, commits). Redis: None
        (no cheap signal: callers re-read)."""
        if self._redis is not None or self._conn is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        with self._lock:
            if (st.st_dev, st.st_ino) != self._inode:
                return None  # replaced: the next read reopens it
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        return (st.st_dev, st.st_ino, version)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._redis is not None:
                self._redis.close()
                self._redis = None

    def __enter__(self) -> OnlineReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _padded(count: int) -> int:
    """The number of keys a statement is prepared for: ``count`` rounded up to a few sizes.

    Requests of varying sizes then share a handful of statements (SQLite's parsing and
    planning of one is a millisecond), kept in the connection's statement cache.
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


def _objects(values: Sequence[Any], nested: bool = False) -> np.ndarray:
    """A 1-d object array of ``values`` (``nested``: values may be lists; never broadcast them)."""
    arr = np.empty(len(values), object)
    if nested:
        for i, v in enumerate(values):
            arr[i] = v
    else:
        arr[:] = values
    return arr


def to_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A ``{column: array}`` dict from :meth:`OnlineReader.read_columns` as a DataFrame."""
    return pd.DataFrame(columns, copy=False)
