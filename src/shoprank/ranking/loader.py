"""A bundle loaded into what one worker serves with, and the process-level steps around it.

:func:`load` reads the bundle (files named in :mod:`shoprank.artifacts`): the champion,
the catalog and its vectors, the retrieval indexes, the feeds' click tables, the
query-understanding heads, the online features (the store named by the manifest's feature
service, the packaged tables as fallbacks) and the query encoder.
"""

from __future__ import annotations

import gc
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shoprank.artifacts import (
    ATTRIBUTES,
    ENCODER_DIR,
    ITEMS,
    MANIFEST,
    MODEL_NAME,
    RECOMMEND_DIR,
    RETRIEVAL_DIR,
    SCORER,
    UNDERSTANDING,
    USERS,
)
from shoprank.config import Params, Serve, Text
from shoprank.logs import log
from shoprank.models.attributes import read_filled
from shoprank.privacy import fingerprint
from shoprank.ranking.catalog import Catalog
from shoprank.ranking.features import OnlineFeatures, open_online_store

if TYPE_CHECKING:
    from shoprank.retrieval import HybridRetriever
    from shoprank.retrieval.history import FeedIndex

logger = logging.getLogger(__name__)


@dataclass
class Loaded:
    bundle: Path
    manifest: dict[str, Any]
    kind: str
    scorer: Any
    catalog: Catalog
    retriever: HybridRetriever
    feed: FeedIndex  # a recommendation feed's retrievers
    understanding: Any  # QueryUnderstanding, or None when the bundle has none
    features: OnlineFeatures
    encoder: Any


def load(
    bundle: Path | str,
    params: Params,
    settings: Serve,
    encoder: Any = None,
    open_store: Any = None,
) -> Loaded:
    """Everything a worker needs from ``bundle``; ``encoder`` and ``open_store`` replace the defaults."""
    import torch

    from shoprank.models.scorers import load as load_scorer
    from shoprank.retrieval import HybridRetriever
    from shoprank.retrieval.history import FeedIndex

    torch.set_num_threads(max(1, settings.torch_threads))
    bundle = Path(bundle)
    manifest = json.loads((bundle / MANIFEST).read_text())
    kind, scorer = load_scorer(bundle / SCORER)
    if hasattr(scorer, "model"):
        scorer.model()  # build the network now, not on the first request
    retriever = HybridRetriever.load(bundle / RETRIEVAL_DIR)
    users = pd.read_parquet(bundle / USERS)
    filled = read_filled(bundle / ATTRIBUTES)  # the catalogue's missing attributes, filled by `understand`
    catalog = Catalog.build(pd.read_parquet(bundle / ITEMS), users, retriever.vectors, filled)
    listed = pd.to_datetime(catalog.items["created_at"], utc=True).to_numpy("datetime64[ns]").astype(np.int64)
    feed = FeedIndex.load(
        bundle / RECOMMEND_DIR, catalog.item_ids, retriever, catalog.is_new, listed, catalog.popularity
    )
    path = bundle / UNDERSTANDING
    understanding = pickle.loads(path.read_bytes()) if path.is_file() else None
    service = manifest["feature_service"]
    if open_store is None:

        def open_store() -> Any:
            return open_online_store(params.features, service)

    features = OnlineFeatures(
        open_store,
        service,
        catalog.items,
        catalog.item_columns,
        users,
        catalog.user_columns,
        settings.feature_ttl_s,
        settings.store_retry_s,
        timeout_s=settings.store_timeout_s,
    )
    if encoder is None:
        encoder = load_encoder(bundle, manifest["encoder"], params.text, settings)
    return Loaded(bundle, manifest, kind, scorer, catalog, retriever, feed, understanding, features, encoder)


def load_encoder(bundle: Path, packaged: dict[str, Any], text: Text, settings: Serve) -> Any:
    """The query encoder: the bundle's ONNX graph (``encoder_runtime: onnx``, the default), else
    PyTorch with the packaged weights; both give the vectors the features were built with."""
    from shoprank.text import load_encoder as load_torch_encoder

    encoder: Any = None
    if settings.encoder_runtime == "onnx" and packaged.get("onnx"):
        from shoprank.text.onnx_encoder import OnnxTextEncoder

        try:
            encoder = OnnxTextEncoder.load(bundle / ENCODER_DIR, threads=settings.torch_threads)
        except Exception as exc:  # a broken or missing graph costs speed, not answers
            log(
                logger,
                "ONNX query encoder unusable; encoding with PyTorch",
                error=repr(exc)[:300],
                level=logging.WARNING,
            )
    if encoder is None:
        update = {"model_dir": packaged["model_dir"], "max_length": packaged["max_length"]}
        encoder = load_torch_encoder(text.model_copy(update=update), device="cpu")
    if packaged.get("key") and packaged["key"] != encoder.key:
        log(
            logger,
            "encoder differs from the one the features were built with",
            packaged=packaged["key"],
            loaded=encoder.key,
            level=logging.WARNING,
        )
    log(logger, "query encoder loaded", runtime=runtime_of(encoder), key=encoder.key)
    return encoder


def runtime_of(encoder: Any) -> str:
    """``onnx`` or ``torch``: what runs the query encoder (readiness reports it)."""
    return getattr(encoder, "runtime", None) or "torch"


def load_bundle_path(model: str | None) -> Path:
    """A bundle folder, or the path of a BentoML model tag (``shoprank-ranker:latest`` by default)."""
    model = model or f"{MODEL_NAME}:latest"
    if Path(model).is_dir():
        return Path(model)
    import bentoml

    return Path(bentoml.models.get(model).path)


def freeze_heap() -> None:
    """Move everything alive now (the loaded model, torch, pandas, Feast) out of the GC's view.

    Python's cyclic collector walks every tracked object on each full (generation 2)
    collection: once a champion is loaded that is hundreds of thousands of objects, and a
    full collection stalls every request in flight. Full collections are rare (they wait
    for the long-lived heap to grow by a quarter) but a service that remembers what it
    served grows it. Frozen objects are skipped, so a full collection becomes cheap.
    Called once by the service after the model is loaded and warmed; objects created
    later are collected as usual.
    """
    gc.collect()
    gc.freeze()


def key_matches(manifest: dict, key: bytes) -> bool:
    """The bundle's shoppers were named with ``key`` (a bundle that does not say is taken to match).

    Under another key no request finds its shopper's features: every shopper is served as
    new. That is logged as an error and readiness shows it.
    """
    recorded = manifest.get("pseudonym_key")
    if recorded is None or recorded == fingerprint(key):
        return True
    log(
        logger,
        "the service's pseudonym key is not the one the bundle's shoppers were named with: "
        "every shopper will look new (set $SHOPRANK_PSEUDONYM_KEY to the pipeline's key)",
        level=logging.ERROR,
    )
    return False
