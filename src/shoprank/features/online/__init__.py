"""A fast reader of Feast's online store: the values ``online_features`` returns, without Feast's read path.

Serving reads one feature service for one user, one query and up to a few hundred items
per request. Feast's ``get_online_features(...).to_df()`` does that work in Python
value by value (protobuf messages per value, a response proto, per-value type
conversion). :class:`OnlineReader` reads the *same* online store that ``shoprank
materialize`` loads (no second copy of the features, no cache of values: every call
queries the store, so a new materialisation is visible to the next call) and decodes
the stored values column by column with numpy::

    from shoprank.features import OnlineReader

    reader = OnlineReader(params.features, FEATURE_SERVICE)   # resolves the service once
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

Modules: :mod:`.reader` (the class), :mod:`.layout` (views, columns, entity keys),
:mod:`.sqlite` and :mod:`.redis` (the fetch paths), :mod:`.decode` (stored values).
"""

from shoprank.features.online.decode import _Column, _Decoder
from shoprank.features.online.layout import OnlineStoreMissing
from shoprank.features.online.reader import OnlineReader, to_frame
from shoprank.features.online.sqlite import PAGE_CACHE_MIB

__all__ = ["PAGE_CACHE_MIB", "OnlineReader", "OnlineStoreMissing", "_Column", "_Decoder", "to_frame"]
