"""Feature computation and the Feast client helpers.

- :func:`build_features`: a validated batch -> time-stamped feature tables (Parquet)
- :func:`materialize`: apply the Feast repository and load the online store incrementally
- :func:`training_set`: impressions + Feast point-in-time join -> the training table
- :func:`online_features`: what serving reads from the online store (Feast's read path)
- :class:`OnlineReader`: the same values from the same store, read without Feast's Python path
  (milliseconds for a page of items; see :mod:`shoprank.features.online`)

Feast (slow to import) is imported inside the functions that use it.
"""

from shoprank.features.build import TABLES, build_features, cached_embedder, text_embedder
from shoprank.features.online import OnlineReader, OnlineStoreMissing
from shoprank.features.pit import historical_features
from shoprank.features.queries import normalise_query, query_id
from shoprank.features.store import apply_repo, materialize, online_features, open_store
from shoprank.features.training import training_set

__all__ = [
    "TABLES",
    "OnlineReader",
    "OnlineStoreMissing",
    "apply_repo",
    "build_features",
    "cached_embedder",
    "historical_features",
    "materialize",
    "normalise_query",
    "online_features",
    "open_store",
    "query_id",
    "text_embedder",
    "training_set",
]
