"""The ``SHOPRANK__<SECTION>__<KEY>`` environment overrides of params.yaml (part of shoprank.config)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

OVERRIDE_PREFIX = "SHOPRANK__"  # SHOPRANK__SERVE__MAX_K=50 sets serve.max_k (double underscores)
Origins = Mapping[tuple[str, ...], str]  # a key's path -> the variable that set it


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or does not match the settings schema."""


def env_overrides(env: Mapping[str, str]) -> dict[tuple[str, ...], tuple[str, str]]:
    """The ``SHOPRANK__<SECTION>__<KEY>`` variables of ``env``: {key path: (variable, value)}."""
    found: dict[tuple[str, ...], tuple[str, str]] = {}
    for var, value in env.items():
        if not var.startswith(OVERRIDE_PREFIX):
            continue
        path = tuple(part.lower() for part in var.removeprefix(OVERRIDE_PREFIX).split("__"))
        if not all(path):
            raise ParamsError(f"${var}: expected {OVERRIDE_PREFIX}<SECTION>__<KEY>, levels joined by '__'")
        if path in found:
            raise ParamsError(f"${var} and ${found[path][0]} both set {'.'.join(path)}")
        found[path] = (var, value)
    return found


def _override_value(var: str, text: str) -> Any:
    """Text for pydantic to convert; a YAML list or mapping when it starts with [ or {."""
    if not text.lstrip().startswith(("[", "{")):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"${var}: not a YAML list or mapping: {exc}") from None


def apply_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> tuple[dict[str, Any], Origins]:
    """``raw`` with the environment's overrides set, and which variable set each key."""
    merged = copy.deepcopy(raw)
    origins: dict[tuple[str, ...], str] = {}
    for path, (var, text) in sorted(env_overrides(env).items()):
        node = merged
        for depth, key in enumerate(path[:-1]):
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                where = ".".join(path[: depth + 1])
                raise ParamsError(f"${var}: {where} is a value, not a section with keys")
        node[path[-1]] = _override_value(var, text)
        origins[path] = var
    return merged, origins
