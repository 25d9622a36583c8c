"""Source values as the contract's types, and which values could not be converted.

Identifiers and text become strings (a float column of whole numbers reads ``7.0`` as
``"7"``), flags accept 0/1/true/false, numbers are parsed, and timestamps are ISO 8601
text or Parquet timestamps unless a :class:`~shoprank.config_data.TimeFormat` says
epoch numbers in a unit or text in a strptime format. Timestamps are UTC; a time
without a zone is taken as UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from shoprank.config_data import TimeFormat
from shoprank.data.importer.problems import Problem

NULL_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})  # read as null in non-text columns
INT64_MAX = 2**63 - 1
FLAGS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}
EXPECTED = {
    "string": "text",
    "timestamp": "ISO 8601 text such as 2024-01-31T12:00:00Z, no zone means UTC, or a Parquet timestamp",
    "float": "a number",
    "int": "a whole number of at most 2^53 in size",
    "flag": "0, 1, true or false",
}


def parse(
    series: pd.Series, type_: str, source: str, time: TimeFormat | None = None, setting: str = ""
) -> tuple[pd.Series, Problem | None]:
    """``series`` as the contract type, and the rows whose values are not valid (or None).

    ``source`` names the column in messages; ``setting`` is where a time format is set.
    """
    if type_ == "timestamp" and time is None and _numeric(series):  # epoch s or ms? refuse to guess
        reason = (
            f"column {source!r} holds numbers ({series.dtype}), not timestamps; "
            f"for epoch times set {setting}: {{unit: s}} (or ms, us, ns)"
        )
        return series, Problem(reason, series.notna().to_numpy(), series)
    if type_ != "string":
        series = nullify(series)
    if type_ == "timestamp" and time is not None:
        converted, bad = _to_timestamp_as(series, time)
        expected = f"epoch {time.unit}" if time.unit else f"text in the format {time.format!r}"
    else:
        converted, bad = COERCE[type_](series)
        expected = EXPECTED[type_]
    bad = np.asarray(bad, dtype=bool) & series.notna().to_numpy()
    if bad.any():
        return converted, Problem(f"column {source!r}: not a valid {type_} ({expected})", bad, series)
    return converted, None


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def nullify(series: pd.Series) -> pd.Series:
    """Text that means "no value" (empty, NA, null, ...) becomes a real null."""
    if not pd.api.types.is_object_dtype(series.dtype) and not pd.api.types.is_string_dtype(series.dtype):
        return series
    text = series.astype(object)
    tokens = text.map(lambda v: isinstance(v, str) and v.strip().lower() in NULL_TOKENS)
    return text.mask(tokens.astype(bool))


def _to_timestamp_as(s: pd.Series, time: TimeFormat) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return pd.to_datetime(s, utc=True), pd.Series(False, index=s.index)
    if time.unit:
        num = to_number(s)
        # beyond the datetime64[ns] range to_datetime overflows instead of coercing: such times are invalid
        ns = pd.Timedelta(1, unit=time.unit).value
        out = pd.to_datetime(num.mask(num.abs() >= INT64_MAX / ns), unit=time.unit, utc=True, errors="coerce")
    else:
        out = pd.to_datetime(s.astype(object), format=time.format, utc=True, errors="coerce")
    return out, out.isna()


def _to_string(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_float_dtype(s.dtype) and (s.dropna() % 1 == 0).all():
        s = s.astype("Int64")  # integer ids that went through a float column: 7.0 -> "7"
    elif pd.api.types.is_object_dtype(s.dtype):
        s = s.map(_nested_as_json)  # nested attributes (Parquet structs and lists) as JSON text
        bad = s.map(lambda v: v is _UNWRITABLE).astype(bool)
        return s.mask(bad).astype("string"), bad
    return s.astype("string"), pd.Series(False, index=s.index)


_UNWRITABLE = object()  # a nested value JSON cannot hold (too deep, not a JSON type)


def _nested_as_json(value: object) -> object:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, dict | list):
        return value
    try:
        return json.dumps(value, default=str)
    except (RecursionError, ValueError, TypeError):
        return _UNWRITABLE


def _to_timestamp(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return pd.to_datetime(s, utc=True), pd.Series(False, index=s.index)  # naive is taken as UTC
    out = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
    return out, out.isna()


def to_number(s: pd.Series) -> pd.Series:
    """Numbers as float64; what is not a number becomes NaN."""
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype("Int8")
    return pd.to_numeric(s.astype(object), errors="coerce").astype("float64")


def _to_float(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num = to_number(s)
    return num, num.isna()


def _to_int(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num = to_number(s)
    # whole numbers a float holds exactly; larger ones would not fit the column or not be the value read
    bad = num.isna() | ~np.isfinite(num) | (num % 1 != 0) | (num.abs() > 2**53)
    return num.mask(bad).astype("Int64"), bad


def _to_flag(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_object_dtype(s.dtype):
        s = s.map(lambda v: FLAGS.get(v.strip().lower(), v) if isinstance(v, str) else v)
    num = to_number(s)
    bad = ~num.isin([0, 1])
    return num.mask(bad).astype("Int8"), bad


COERCE: dict[str, Callable[[pd.Series], tuple[pd.Series, pd.Series]]] = {
    "string": _to_string,
    "timestamp": _to_timestamp,
    "float": _to_float,
    "int": _to_int,
    "flag": _to_flag,
}
