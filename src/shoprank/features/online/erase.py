"""One entity's rows removed from Feast's online store (SQLite or Redis), e.g. an erased shopper.

Feast has no call that deletes one entity, so this writes what its stores read: SQLite
keeps one table per view with the serialised entity key per row; Redis keeps one hash per
entity under the serialised key followed by the project name (all views of the entity).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shoprank.config import Features
from shoprank.features.store import open_store


def erase_entity(settings: Features, join_key: str, value: str) -> int:
    """Delete the online rows (SQLite) or hash (Redis) of ``join_key = value``; how many were there."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import compute_table_id
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    store = open_store(settings)
    config = store.config
    key = serialize_entity_key(
        EntityKey(join_keys=[join_key], entity_values=[Value(string_val=value)]),
        entity_key_serialization_version=config.entity_key_serialization_version,
    )
    views = [v for v in store.list_feature_views() if list(v.join_keys) == [join_key]]
    if config.online_store.type == "redis":
        from feast.infra.online_stores.redis import RedisOnlineStore

        client = RedisOnlineStore()._get_client(config.online_store)
        return int(client.delete(key + config.project.encode("utf-8")))
    path = Path(config.online_store.path)
    path = path if path.is_absolute() else Path(config.repo_path or ".") / path
    if not path.is_file():
        return 0
    versioning = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
    deleted = 0
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for view in views:
            table = compute_table_id(config.project, view, versioning)
            if table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                deleted += conn.execute(f"DELETE FROM {quoted} WHERE entity_key = ?", (key,)).rowcount
    return deleted
