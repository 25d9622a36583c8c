"""The texts behind the text vectors, for a BERT-CTR that runs its encoder itself.

Frozen, BERT-CTR reads the stored embeddings of the query and of the item. Fine-tuned or
with LoRA adapters (``train.mode`` finetune, lora) its encoder tokenizes the texts those
embeddings encode: the declared inputs of kind ``text``. The normalised query
(``query_text``) is a field of the ``query_text`` view, so the training set, evaluation's
point-in-time frames and the online store hold it; serving normalises the request's query
with the same function (:func:`shoprank.features.queries.normalise_query`). The item's text
(``item_text``, title then description) comes from the catalog by item id: a Feast view
would copy a string onto every impression of a training set.

Training, evaluation, drift and serving all add it with :func:`add_item_texts`, from the
validated batch's catalog (:func:`batch_texts`) or the bundle's (:func:`item_texts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pandas as pd

from shoprank.inputs.declare import texts
from shoprank.inputs.frame import Frame

F = TypeVar("F", Frame, pd.DataFrame)


def item_text_inputs(catalog: pd.DataFrame) -> list[str]:
    """The text of each catalog row: title, then description (what the item's embedding encodes)."""
    return (catalog["title"].astype(str) + ". " + catalog["description"].astype(str)).tolist()


def item_texts(catalog: pd.DataFrame) -> pd.Series:
    """Item id -> its text, one entry per catalog row (the catalog's order)."""
    ids = catalog["item_id"].astype(str).to_numpy()
    return pd.Series(item_text_inputs(catalog), index=pd.Index(ids, name="item_id"), dtype=object)


def batch_texts(batch_dir: Path | str) -> pd.Series:
    """:func:`item_texts` of a validated batch's catalog: what its models are trained and evaluated on."""
    columns = ["item_id", "title", "description"]
    return item_texts(pd.read_parquet(Path(batch_dir) / "catalog.parquet", columns=columns))


def add_item_texts(frame: F, texts_by_id: pd.Series) -> F:
    """Add the declared item text column to ``frame`` (changed in place, and returned).

    Each row gets the text of its ``item_id``; an item the catalog lacks gets ``""``. The
    rows share the catalog's string objects: a column of pointers, not of copies.
    """
    df = frame.df if isinstance(frame, Frame) else frame
    column = texts()["item"]
    got = df["item_id"].astype(str).map(texts_by_id)
    df[column] = got.where(got.notna(), "").astype(object).to_numpy()
    return frame
