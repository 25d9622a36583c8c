"""What a reader reads: the service's views and columns, their SQL names, the entity keys.

Entity keys are serialised like Feast (``serialize_entity_key`` layout, checked against
Feast's function at construction): string keys of one join key directly, others through
Feast's own function.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from shoprank.features.online.decode import _BATCHED, _KINDS, _Column
from shoprank.features.store import FeatureRepoError


class OnlineStoreMissing(FeatureRepoError):
    """The online store (or the service, or a view's table) is not there: not applied or materialised."""


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


# what a read fetches per view: (row -> unique entity index or None, grid of stored bytes, null mask or None)
_Fetched = tuple[np.ndarray | None, np.ndarray, np.ndarray | None]


class _Layout:
    """Resolution of the service's views (at construction) and encoding of their entity keys."""

    views: list[_View]
    store_type: str
    _entity_keys: set[str]
    _key_version: int
    _serialize: Any

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
