"""The Feast feature store of the repository in ``features.repo``: open, apply, materialise, read.

The store's settings live in ``<repo>/feature_store.yaml`` only. One override comes
from params.yaml: ``features.online_store: redis`` replaces the online store with Redis
at ``features.redis_url``, so the same code serves from SQLite on a laptop and from
Redis in production.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import logging
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq
import yaml

from shoprank.config import Features
from shoprank.logs import log

if TYPE_CHECKING:  # pragma: no cover - typing only
    from feast import FeatureStore

logger = logging.getLogger(__name__)
STORE_YAML = "feature_store.yaml"


class FeatureRepoError(ValueError):
    """The feature repository, its settings or the feature tables do not fit together."""


def store_config(settings: Features) -> Any:
    """The repo's feature_store.yaml as a Feast ``RepoConfig``, plus the params.yaml override.

    Like Feast's own loader, ``${VARIABLES}`` in the file are taken from the environment.
    """
    from feast.repo_config import RepoConfig

    repo = Path(settings.repo).resolve()
    path = repo / STORE_YAML
    if not path.is_file():
        raise FeatureRepoError(f"{path}: no Feast feature_store.yaml (features.repo in params.yaml)")
    raw = yaml.safe_load(os.path.expandvars(path.read_text()))
    if settings.online_store == "redis":
        raw["online_store"] = {"type": "redis", "connection_string": os.path.expandvars(settings.redis_url)}
    config = RepoConfig(**raw)
    config.repo_path = repo
    return config


def open_store(settings: Features) -> FeatureStore:
    """A Feast ``FeatureStore`` on ``settings.repo`` (not applied: see :func:`apply_repo`)."""
    from feast import FeatureStore

    return FeatureStore(repo_path=str(Path(settings.repo).resolve()), config=store_config(settings))


def load_definitions(repo: Path | str) -> list[Any]:
    """Every Feast object defined by the repo's ``*.py`` files, imported like ``feast apply`` does.

    The files import each other by bare module name (``from entities import item``), so
    the repo goes on ``sys.path`` for the import and its modules are forgotten afterwards:
    a second repo (a test's copy) gets its own objects, not cached ones.
    """
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    repo = Path(repo).resolve()
    files = sorted(p for p in repo.glob("*.py") if p.name != "__init__.py")
    names = [p.stem for p in files]
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    sys.path.insert(0, str(repo))
    found: list[Any] = []
    try:
        for name in names:
            module = importlib.import_module(name)
            for obj in vars(module).values():
                kinds = (Entity, DataSource, FeatureView, FeatureService)
                if isinstance(obj, kinds) and not any(obj is seen for seen in found):
                    found.append(obj)
    finally:
        sys.path.remove(str(repo))
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
    if not found:
        raise FeatureRepoError(f"{repo}: no Feast definitions in {[p.name for p in files]}")
    return found


def apply_repo(store: FeatureStore, repo: Path | str) -> dict[str, list[str]]:
    """Register the repo's definitions (like ``feast apply``); drop views and services it no longer has."""
    from feast import FeatureService, FeatureView

    objects = load_definitions(repo)
    views = {o.name for o in objects if isinstance(o, FeatureView)}
    services = {o.name for o in objects if isinstance(o, FeatureService)}
    stale: list[Any] = [v for v in store.list_feature_views() if v.name not in views]
    stale += [s for s in store.list_feature_services() if s.name not in services]
    store.apply(objects, objects_to_delete=stale, partial=not stale)
    log(
        logger,
        "feature repo applied",
        repo=str(repo),
        views=len(views),
        services=len(services),
        removed=[o.name for o in stale],
    )
    return {"views": sorted(views), "services": sorted(services), "removed": sorted(o.name for o in stale)}


def definitions_digest(repo: Path | str) -> str:
    """A hash of the repo's definitions: its ``*.py`` files, feature_store.yaml and the params they read."""
    from shoprank.features.repo import settings_digest

    repo = Path(repo).resolve()
    h = hashlib.sha256(settings_digest().encode())
    for path in sorted([*repo.glob("*.py"), repo / STORE_YAML]):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def ensure_applied(store: FeatureStore, repo: Path | str) -> bool:
    """Apply the repo only if its definitions changed since the last apply; True if it applied.

    Feast rewrites the registry on every apply, even an unchanged one. Readers (the
    training set, evaluation) call this instead of :func:`apply_repo`, so they leave the
    registry byte for byte as ``shoprank materialize`` wrote it and DVC sees no change.
    The digest of the applied definitions is kept beside a file registry.
    """
    digest = definitions_digest(repo)
    registry = Path(store.config.registry.path)
    if not registry.is_absolute():
        registry = Path(store.config.repo_path or ".") / registry
    marker = registry.with_name(registry.name + ".applied")
    if registry.is_file() and marker.is_file() and marker.read_text().strip() == digest:
        return False
    apply_repo(store, repo)
    if registry.parent.is_dir():  # a file registry (a SQL or remote registry has no folder here)
        marker.write_text(digest + "\n")
    return True


def source_path(store: FeatureStore, view: Any) -> Path:
    """The Parquet file a feature view reads, resolved like Feast resolves it."""
    from feast.infra.offline_stores.file_source import FileSource

    uri = view.batch_source.path
    return Path(FileSource.get_uri_for_file_path(store.config.repo_path, uri)).resolve()


def check_tables(store: FeatureStore, features_dir: Path | str) -> dict[str, Path]:
    """Each registered view reads ``<features_dir>/<view>.parquet``, which has its columns.

    Catches the two ways the repo and params.yaml can drift apart: ``paths.features``
    moved, or the tables were computed before ``features.windows_days`` or ``data.columns`` changed.
    """
    features_dir = Path(features_dir).resolve()
    paths, problems = {}, []
    for view in store.list_feature_views():
        path = source_path(store, view)
        if path.parent != features_dir:
            problems.append(f"view {view.name} reads {path}, but paths.features is {features_dir}")
        elif not path.is_file():
            problems.append(f"view {view.name}: {path} does not exist (run `shoprank features` first)")
        else:
            have = set(pq.read_schema(path).names)
            source = view.batch_source
            stamp = source.timestamp_field if source is not None else "event_timestamp"
            need = {f.name for f in view.features} | {stamp, *view.join_keys}
            if missing := sorted(need - have):
                problems.append(
                    f"view {view.name}: {path.name} lacks {missing} (computed before "
                    f"features.windows_days or data.columns changed? run `shoprank features`)"
                )
        paths[view.name] = path
    if problems:
        raise FeatureRepoError("feature repository and feature tables disagree:\n  " + "\n  ".join(problems))
    return paths


def _utc(t: datetime | pd.Timestamp) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is taken to be UTC already (the contract's convention)."""
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _time_range(path: Path) -> tuple[pd.Timestamp, pd.Timestamp]:
    ts = pq.read_table(path, columns=["event_timestamp"]).column("event_timestamp").to_pandas()
    return ts.min(), ts.max()


def materialize(settings: Features, features_dir: Path | str, end: datetime | None = None) -> dict:
    """Apply the repo, then load the online store with each view's latest values up to ``end``.

    Snapshot views load incrementally: from where the last run stopped (Feast's
    ``materialize_incremental``), or from their oldest row the first time (Feast alone
    would start a year before today). Static views (tag ``kind: static``: one row per
    entity, stamped at its creation) are reloaded whole every time: an edited title or
    price keeps its old stamp, so an incremental load would never see it. ``end``
    defaults to the newest row of all tables: the data's own clock, so a re-run on the
    same tables loads nothing new and simulated data of any date works.
    Returns ``{"online_store", "end", "views": {view: {"from", "to"}}, "empty": [view], "seconds"}``.
    """
    start = time.perf_counter()
    store = open_store(settings)
    ensure_applied(store, settings.repo)
    paths = check_tables(store, features_dir)
    ranges = {name: _time_range(path) for name, path in paths.items()}
    # an empty table (no queries in a log of feeds) has nothing to load and no time range
    empty = sorted(name for name, (lo, _) in ranges.items() if pd.isna(lo))
    ranges = {name: r for name, r in ranges.items() if name not in empty}
    if not ranges:
        raise ValueError(f"every feature table under {features_dir} is empty: nothing to load")
    until = _utc(end if end is not None else max(hi for _, hi in ranges.values()))
    done: dict[str, dict[str, str]] = {}
    views = [v for v in store.list_feature_views() if v.name not in empty]
    whole = [v for v in views if v.most_recent_end_time is None or v.tags.get("kind") == "static"]
    reloaded = {v.name for v in whole}
    later = [v for v in views if v.name not in reloaded and _utc(v.most_recent_end_time) < until]
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints progress bars; we log instead
        for view in whole:
            begin = _utc(ranges[view.name][0]) - pd.Timedelta(microseconds=1)
            store.materialize(
                start_date=begin.to_pydatetime(), end_date=until.to_pydatetime(), feature_views=[view.name]
            )
            done[view.name] = {"from": begin.isoformat(), "to": until.isoformat()}
        if later:
            store.materialize_incremental(
                end_date=until.to_pydatetime(), feature_views=[v.name for v in later]
            )
    for v in later:
        done[v.name] = {"from": _utc(v.most_recent_end_time).isoformat(), "to": until.isoformat()}
    seconds = round(time.perf_counter() - start, 3)
    log(
        logger,
        "online store loaded",
        store=store.config.online_store.type,
        views=sorted(done),
        empty=empty,
        end=until.isoformat(),
        seconds=seconds,
    )
    return {
        "online_store": store.config.online_store.type,
        "end": until.isoformat(),
        "views": done,
        "empty": empty,
        "seconds": seconds,
    }


def online_features(store: FeatureStore, service: str, entity_rows: list[dict[str, str]]) -> pd.DataFrame:
    """Online values of a feature service for ``entity_rows`` (``item_id``, ``user_id``, ``query_id``).

    One row per entity row, in order; a key with no stored value reads as null.
    """
    fs = store.get_feature_service(service)
    return store.get_online_features(features=fs, entity_rows=entity_rows).to_df()


def copy_repo(source: Path | str, dest: Path | str) -> Path:
    """A private copy of the Feast repository ``source`` under ``dest``/features.

    Only definitions and feature_store.yaml are copied, so the copy gets its own registry
    and online store (tests and benchmarks use it to leave the project's store alone).
    """
    repo = Path(dest) / "features"
    repo.mkdir(parents=True)
    for path in Path(source).iterdir():
        if path.suffix in (".py", ".yaml"):
            shutil.copy(path, repo / path.name)
    return repo
