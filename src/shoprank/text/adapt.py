"""`shoprank adapt`: the sentence encoder adapted to the shop, and compared with the stock one.

The step:

1. mines (query, clicked item) pairs from the validated batch's impressions, split by
   time exactly as the training table is (:func:`shoprank.training.data.time_split`, with
   ``train.val_share``/``test_share``, erased shoppers left out first): the training
   split's pairs train, the validation split's pairs score; test rows are never read.
   Queries are normalised and items are their title and description, the texts
   ``shoprank features`` embeds;
2. fine-tunes the stock encoder (``text.model_dir``) on the distinct training pairs
   (at most ``adapt.max_pairs``) with in-batch negatives (:mod:`shoprank.text.contrastive`);
3. writes ``<text.encoders_dir>/adapted`` (a Hugging Face folder that
   :class:`~shoprank.text.TextEncoder` loads, and its ONNX export in ``onnx/``, checked
   against PyTorch) and ``stock.json`` / ``adapted.json`` with each encoder's key: what
   ``features`` and ``package`` depend on, so retraining the adapted encoder re-runs them
   only when ``text.encoder`` is ``adapted``;
4. scores both encoders on the validation pairs (recall@10 and MRR of the clicked item
   among the whole catalogue) into ``<paths.metrics>/adapt.json``, with the training time.

Both encoders' vectors go through the embedding cache (keyed by each encoder's weights),
so ``features`` later finds the catalogue's vectors already encoded.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shoprank.logs import log

if TYPE_CHECKING:  # pragma: no cover - typing only
    from shoprank.config import Params

logger = logging.getLogger(__name__)

METRICS_FILE = "adapt.json"
ONNX_DIR = "onnx"
CHECK_TEXTS = 32  # pair texts the ONNX export is checked on


def mine_pairs(
    batch_dir: Path | str, val_share: float, test_share: float, erased: frozenset[str] = frozenset()
) -> dict[str, pd.DataFrame]:
    """Distinct (query, item_id, text) of clicked search impressions, per split (train, val).

    The split is the training table's (by request time over every impression, after
    erased shoppers are removed); only clicked rows with a non-empty query become pairs.
    """
    from shoprank.data.io import table_path
    from shoprank.features.queries import normalise_query
    from shoprank.inputs.texts import item_texts
    from shoprank.training.data import time_split

    batch_dir = Path(batch_dir)
    columns = ["request_id", "ts", "user_id", "item_id", "query", "clicked"]
    imp = pd.read_parquet(table_path(batch_dir, "impressions"), columns=columns)
    if erased:
        imp = imp[~imp["user_id"].astype("string").isin(erased).to_numpy(dtype=bool)]
    imp = imp.rename(columns={"ts": "event_timestamp"}).reset_index(drop=True)
    split = time_split(imp, val_share, test_share)
    catalog = pd.read_parquet(table_path(batch_dir, "catalog"), columns=["item_id", "title", "description"])
    texts = item_texts(catalog)
    out = {}
    for name in ("train", "val"):
        rows = imp.iloc[split[name]]
        rows = rows[rows["clicked"].astype(bool).to_numpy()]
        query = rows["query"].astype(str).map(normalise_query)
        pairs = pd.DataFrame({"query": query.to_numpy(), "item_id": rows["item_id"].astype(str).to_numpy()})
        pairs = pairs[pairs["query"] != ""].drop_duplicates(ignore_index=True)
        pairs = pairs[pairs["item_id"].isin(texts.index)].reset_index(drop=True)
        pairs["text"] = texts.loc[pairs["item_id"]].to_numpy()
        out[name] = pairs
    return out


def sample(pairs: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, a seeded sample when there are more (the order is kept)."""
    if len(pairs) <= n:
        return pairs
    keep = np.sort(np.random.default_rng(seed).choice(len(pairs), n, replace=False))
    return pairs.iloc[keep].reset_index(drop=True)


def score(encoder: Any, cache_dir: Path | str, catalog: pd.Series, pairs: pd.DataFrame) -> dict[str, Any]:
    """Recall@10 and MRR of ``pairs`` (query, item_id) over the whole ``catalog`` (item id -> text)."""
    from shoprank.text.cache import EmbeddingCache
    from shoprank.text.contrastive import retrieval_scores

    cache = EmbeddingCache(cache_dir, encoder.key)
    queries = pd.Index(pairs["query"].unique())
    item_vecs = cache.embed(catalog.tolist(), encoder)
    query_vecs = cache.embed(queries.tolist(), encoder)
    rows = np.stack(
        [queries.get_indexer(pairs["query"]), catalog.index.get_indexer(pairs["item_id"])], axis=1
    )
    return {"key": encoder.key, **retrieval_scores(query_vecs, item_vecs, rows, k=10)}


def write_encoder(
    encoder: Any, folder: Path, check_texts: list[str], max_length: int, batch_size: int
) -> Any:
    """``encoder`` saved as a Hugging Face folder with its ONNX export; returns it loaded back from there."""
    from shoprank.text.encoder import TextEncoder
    from shoprank.text.onnx_encoder import export

    staging = folder.with_name(f".{folder.name}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    encoder.model.save_pretrained(str(staging))
    encoder.tokenizer.save_pretrained(str(staging))
    # loaded back under the folder's name: the key features and serving will compute
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    saved = TextEncoder.load(folder, max_length, batch_size, device="cpu")
    export(saved, folder / ONNX_DIR, check_texts)
    return saved


def write_identity(text: Any, name: str, key: str) -> None:
    """``<text.encoders_dir>/<name>.json``: the encoder's key, what `features` and `package` follow."""
    Path(text.encoders_dir).mkdir(parents=True, exist_ok=True)
    identity = {"encoder": name, "key": key, "max_length": text.max_length}
    (Path(text.encoders_dir) / f"{name}.json").write_text(json.dumps(identity, indent=2) + "\n")


def not_adapted(params: Params, stock_key: str, pairs: dict[str, Any], why: str) -> dict[str, Any]:
    """Too few pairs to adapt on: the stock encoder stays usable and the metrics say why, unless
    ``text.encoder`` asks for the adapted one, which cannot be made."""
    if params.text.encoder == "adapted":
        raise ValueError(f"text.encoder is adapted, but {why}: set text.encoder: stock")
    shutil.rmtree(params.text.encoders_dir, ignore_errors=True)  # no stale adapted encoder stays
    write_identity(params.text, "stock", stock_key)
    result = {
        "pairs": {name: len(frame) for name, frame in pairs.items()},
        "adapted": None,
        "reason": why,
    }
    out = Path(params.paths.metrics) / METRICS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(logger, "not adapted", reason=why, level=logging.WARNING)
    return result


def run_adapt(params: Params) -> dict[str, Any]:
    """The whole step (see the module docstring); returns what ``metrics/adapt.json`` holds."""
    import torch

    from shoprank.inputs.texts import batch_texts
    from shoprank.privacy import read_erased
    from shoprank.quality import current_batch
    from shoprank.text.contrastive import fine_tune
    from shoprank.text.encoder import TextEncoder
    from shoprank.text.onnx_encoder import OnnxTextEncoder, batch_encoder

    started = time.perf_counter()
    s, text = params.adapt, params.text
    batch = current_batch(params.paths.validated)
    pairs = mine_pairs(
        batch, params.train.val_share, params.train.test_share, read_erased(params.paths.erasure)
    )
    train, val = sample(pairs["train"], s.max_pairs, s.seed), sample(pairs["val"], s.eval_pairs, s.seed)
    log(
        logger,
        "adapt pairs",
        train=len(pairs["train"]),
        used=len(train),
        val=len(pairs["val"]),
        scored=len(val),
    )
    stock = TextEncoder.load(text.model_dir, text.max_length, text.batch_size)
    if len(train) < 2:  # a log without searches (recommendation feeds only) has nothing to adapt to
        return not_adapted(params, stock.key, pairs, f"{len(train)} distinct (query, clicked item) pairs "
                           f"in the training split of {batch}")  # fmt: skip
    catalog = batch_texts(batch)
    stock_scores = score(batch_encoder(stock, text.runtime, text.cache_dir), text.cache_dir, catalog, val)
    trained, report = fine_tune(stock, train["query"].tolist(), train["text"].tolist(), s)
    folder = Path(text.adapted_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    check = [*train["query"].head(CHECK_TEXTS // 2), *train["text"].head(CHECK_TEXTS // 2)]
    saved = write_encoder(trained, folder, check, text.max_length, text.batch_size)
    onnx = OnnxTextEncoder.load(
        folder / ONNX_DIR, threads=torch.get_num_threads(), batch_size=text.batch_size, spinning=True
    )
    adapted_scores = score(onnx, text.cache_dir, catalog, val)
    for name, key in (("stock", stock.key), ("adapted", saved.key)):
        write_identity(text, name, key)
    better = "adapted" if adapted_scores["mrr"] > stock_scores["mrr"] else "stock"
    result = {
        "pairs": {
            "train": len(pairs["train"]),
            "used": len(train),
            "val": len(pairs["val"]),
            "scored": len(val),
        },
        "stock": stock_scores,
        "adapted": adapted_scores,
        "better_by_mrr": better,
        "training": report,
        "onnx_parity_max_abs_diff": json.loads((folder / ONNX_DIR / "encoder.json").read_text())[
            "parity_max_abs_diff"
        ],
        "seconds": round(time.perf_counter() - started, 2),
    }
    out = Path(params.paths.metrics) / METRICS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(logger, "adapt done", stock_mrr=stock_scores["mrr"], adapted_mrr=adapted_scores["mrr"], out=str(out))
    return result
