"""The ``serve:`` section of params.yaml: the online service's settings (a part of :mod:`shoprank.config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shoprank.config_data import Strict


class Serve(Strict):
    """The online service's knobs (src/shoprank/ranking): input limits, re-ranking, caches, runtimes."""

    max_k: int = Field(100, gt=0)  # largest page a search may ask for
    max_candidates: int = Field(1000, gt=0)  # largest candidate list `rank` accepts
    max_query_chars: int = Field(256, gt=0)  # longer queries are rejected (422)
    max_body_bytes: int = Field(65536, gt=0)  # larger request bodies are rejected (413)
    retrieve_n: int = Field(200, gt=0)  # candidates per retriever (search: 2, a feed: 4) before fusion
    feed_history: int = Field(10, gt=0)  # a shopper's latest clicks whose neighbours a feed retrieves
    # what a page is ordered by (models/objective.py): P(click), expected purchases or expected sales
    objective: Literal["clicks", "purchases", "revenue"] = "clicks"
    # score discount per shown item of the same category: searches (they ask for what they want) and feeds
    search_diversity: float = Field(0.0, ge=0, le=1)
    feed_diversity: float = Field(0.15, ge=0, le=1)
    explore_share: float = Field(0.1, ge=0, le=1)  # share of a page reserved for new items (exploration)
    feature_ttl_s: float = Field(60.0, ge=0)  # online values are reused this long in-process (0: never)
    reload_s: float = Field(30.0, ge=0)  # how often a worker looks for a newly packaged champion (0: never)
    catalog_refresh_s: float = Field(60.0, ge=0)  # catalogue updates applied this often (0: load, call)
    store_timeout_s: float = Field(1.0, gt=0)  # a request waits this long for the store, then falls back
    store_retry_s: float = Field(5.0, ge=0)  # after a store failure, fallbacks this long before a retry
    query_cache: int = Field(10000, ge=0)  # query embeddings kept in memory (0: none)
    explain_top: int = Field(20, ge=0)  # results that get reasons (occlusion: one scorer row per group)
    fast_path: bool = True  # neural champions: inputs from arrays (fastpath.py); false: the pandas path
    torch_threads: int = Field(1, gt=0)  # intra-op threads per worker: small batches gain nothing from more
    # what encodes unseen queries: onnx (the bundle's exported graph, faster on CPU) or torch
    encoder_runtime: Literal["onnx", "torch"] = "onnx"
    workers: int = Field(2, gt=0)  # BentoML worker processes: one per core, each holds the whole model
    # the address `make serve` binds: this machine only, unless a deployment opens it
    host: str = Field("127.0.0.1", min_length=1)
