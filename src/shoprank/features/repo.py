"""What the Feast repository's definitions take from params.yaml: the windows and the shop's columns.

features/feature_views.py builds its windowed fields and the shop's profile fields from
the declared inputs (:mod:`shoprank.inputs.declare`), so ``features.windows_days`` and
``data.columns`` are set in params.yaml only. shoprank's steps load params first, which
declares both; a bare ``feast`` command run in the repository reads ../params.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shoprank.inputs.declare import SHOP, configured_windows, windowed

INT_FIELDS = ("_impressions_",)  # counts are Int64; every other windowed value is Float32


def _ensure_configured(repo: Path) -> None:
    if configured_windows():
        return
    from shoprank.config import load_params, params_path

    beside = repo.parent / "params.yaml"
    load_params(beside if beside.is_file() else params_path())


def windowed_fields(repo: Path | str, view: str) -> list[Any]:
    """Feast fields of the view's windowed statistics, one per declared window."""
    from feast import Field
    from feast.types import Float32, Int64

    _ensure_configured(Path(repo))
    return [
        Field(
            name=x.name,
            dtype=Int64 if any(k in x.name for k in INT_FIELDS) else Float32,
            description=x.description,
        )
        for x in windowed(view)
    ]


def shop_fields(repo: Path | str, view: str) -> list[Any]:
    """Feast fields of the columns the shop declares for the view (data.columns)."""
    from feast import Field
    from feast.types import Float32, String

    _ensure_configured(Path(repo))
    return [
        Field(name=x.name, dtype=Float32 if x.kind == "numeric" else String, description=x.description)
        for x in SHOP
        if x.view == view
    ]


def settings_digest() -> str:
    """The params the definitions depend on, as text: part of the repo's digest (store.py)."""
    shop = [(x.name, x.kind, x.view) for x in SHOP]
    return json.dumps({"windows": list(configured_windows()), "shop": shop})
