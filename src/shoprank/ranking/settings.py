"""Serving settings: defaults here, overridable per deployment by ``SHOPRANK_SERVE_*`` variables.

params.yaml has no ``serve`` section yet; the service reads its feature-store and
feedback settings from params.yaml (``$SHOPRANK_PARAMS``) and these knobs from the
environment, so one Bento can be tuned per deployment without rebuilding it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

PREFIX = "SHOPRANK_SERVE_"


@dataclass(frozen=True)
class ServeSettings:
    max_k: int = 100  # largest page a search may ask for
    max_candidates: int = 1000  # largest candidate list `rank` accepts
    max_query_chars: int = 256  # longer queries are rejected (422)
    max_body_bytes: int = 65536  # larger request bodies are rejected (413)
    retrieve_n: int = 200  # candidates per retriever (BM25, nearest neighbours) before fusion
    diversity: float = 0.15  # score discount per already-shown item of the same category (0 = none)
    explore_share: float = 0.1  # share of a page reserved for new items (exploration slots)
    feature_ttl_s: float = 60.0  # how long online feature values are reused in-process (0 = never)
    store_timeout_s: float = 1.0  # a request waits this long for the online store, then uses fallbacks
    store_retry_s: float = 5.0  # after an online-store failure, serve fallbacks this long before retrying
    query_cache: int = 10000  # query embeddings kept in memory
    explain_top: int = 20  # results that get reasons (occlusion: one extra scorer row per group)
    fast_path: bool = True  # neural champions: inputs from arrays (see fastpath.py); False: pandas path
    torch_threads: int = 1  # intra-op threads per worker (torch and ONNX Runtime): small batches gain nothing
    encoder_runtime: str = "onnx"  # unseen queries: "onnx" (the bundle's graph, ~3x faster) or "torch"

    def __post_init__(self) -> None:
        if self.encoder_runtime not in ("onnx", "torch"):
            raise ValueError(f"encoder_runtime must be 'onnx' or 'torch', got {self.encoder_runtime!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServeSettings:
        source: Mapping[str, str] = os.environ if env is None else env
        defaults = cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(PREFIX + f.name.upper())
            if raw is not None:
                kind = type(getattr(defaults, f.name))
                values[f.name] = raw.lower() in ("1", "true", "yes") if kind is bool else kind(raw)
        return cls(**values)
