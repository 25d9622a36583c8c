"""Feast ``ValueProto`` bytes -> column values: fast paths with numpy, protobuf as the fallback.

A column is decoded at once: fixed-width floats and embedding matrices with
``np.frombuffer``, varint ints vectorised, strings by slicing (memoised by their bytes);
anything unusual falls back to protobuf parsing and Feast's own conversion, value by value.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


@dataclass
class _Column:
    name: str  # output column (the feature name: Feast's full_feature_names=False)
    feature: str  # feature name in the store
    kind: str  # a _KINDS value, or "generic"
    value_type: Any  # Feast ValueType (the generic path hands it to Feast's converter)


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
_MISS = object()  # not in the string memo
_NULLS = {None: None, b"": None}  # stored nulls: no row, or an empty value
STRING_MEMO = 100_000  # string values kept by _Decoder before its memo is emptied

_LISTS = {
    "float32_list": np.float32,
    "float64_list": np.float64,
    "int64_list": np.int64,
    "int32_list": np.int64,
}
_SCALARS = {"float32", "float64", "int64", "int32", "bool"}
_BATCHED = _SCALARS | {"string"}  # decoded a view's columns of one kind at a time
_NUMERIC = {"float32", "float64", "int64", "int32", "bool", "float32_list", "float64_list"}


def _objects(values: Sequence[Any], nested: bool = False) -> np.ndarray:
    """A 1-d object array of ``values`` (``nested``: values may be lists; never broadcast them)."""
    arr = np.empty(len(values), object)
    if nested:
        for i, v in enumerate(values):
            arr[i] = v
    else:
        arr[:] = values
    return arr
