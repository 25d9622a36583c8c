"""The item-embedding table: the model's item vectors, shared by training and packaging.

Training gives the neural scorer this table (row ``i`` is the item ``ids[i]``) and
packaging builds the retrieval index and the served item table in the same order, so
both read it through :func:`item_embeddings`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shoprank.inputs.frame import dense

ITEM_TEXT = "item_text.parquet"  # the feature table that holds the embeddings


def item_embeddings(features_dir: Path | str) -> tuple[list[str], np.ndarray]:
    """Every item's latest text embedding from the feature tables: (ids, (n, dim))."""
    table = pq.read_table(Path(features_dir) / ITEM_TEXT)
    df = table.select(["item_id", "event_timestamp"]).to_pandas()
    last = df.sort_values("event_timestamp", kind="stable").drop_duplicates("item_id", keep="last").index
    vec = dense(table["item_embedding"].take(pa.array(last.to_numpy())))
    return df.loc[last, "item_id"].astype(str).tolist(), vec
