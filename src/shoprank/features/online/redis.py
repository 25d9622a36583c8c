"""The Redis fetch path: one pipeline of ``HMGET``, one per entity.

All the service's views of an entity share one Redis hash (Feast's key layout: serialised
key + project name, fields ``mmh3("<view>:<feature>")``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoprank.features.online.layout import _Fetched, _Layout, _View

CONNECT_TIMEOUT_S = 2.0  # a host that drops packets: the connect gives up instead of hanging


class _RedisStore(_Layout):
    """Reads of Feast's Redis online store (a part of :class:`OnlineReader`)."""

    _redis: Any

    def _setup_redis(self, config: Any) -> None:
        from feast.infra.online_stores.helpers import _mmh3
        from feast.infra.online_stores.redis import RedisOnlineStore

        self._redis = RedisOnlineStore()._get_client(config.online_store)  # Feast's own client setup
        self._fail_fast()
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

    def _fail_fast(self) -> None:
        """No retries inside the client, and a bounded connect: a refused connection fails at once.

        redis-py retries a failed connection three times with backoff (about 10 s for a
        refused one). The service has its own deadline per read, fallbacks and a circuit;
        retries here only hold a reader thread past that deadline, so the reads queued
        behind it (a readiness probe among them) time out after the store is back.
        """
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if hasattr(self._redis, "set_retry"):
            self._redis.set_retry(Retry(NoBackoff(), 0))
        pool = getattr(self._redis, "connection_pool", None)
        if pool is not None:
            pool.connection_kwargs.setdefault("socket_connect_timeout", CONNECT_TIMEOUT_S)

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
