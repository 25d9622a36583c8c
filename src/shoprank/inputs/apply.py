"""Add the declared derived inputs and the item texts to a frame: what training, evaluation, serving call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from shoprank.inputs.declare import inputs
from shoprank.inputs.derive import DERIVATIONS
from shoprank.inputs.frame import Frame, Vectors
from shoprank.inputs.texts import add_item_texts
from shoprank.models.attributes import Filled, fill_missing


def derive(
    frame: Frame | pd.DataFrame,
    names: Iterable[str] | None = None,
    texts: pd.Series | None = None,
    filled: Filled | None = None,
) -> Any:
    """Add the declared derived inputs that ``frame`` has the columns for (or just ``names``).

    ``texts``: the catalog's item texts by item id (:mod:`shoprank.inputs.texts`); with them
    the item text input is added too, which a fine-tuned BERT-CTR tokenizes. ``filled``: the
    catalogue's missing attribute values filled from the item's text (:mod:`shoprank.models.attributes`),
    written into the item's columns where they are missing, before anything is derived from them.
    Returns ``frame`` (a :class:`Frame` or a DataFrame, changed in place). Written once here
    and used by training, evaluation and serving alike.
    """
    if texts is not None:
        add_item_texts(frame, texts)
    df = frame.df if isinstance(frame, Frame) else frame
    fill_missing(df, filled)
    vectors: dict[str, Vectors] = frame.vectors if isinstance(frame, Frame) else {}
    wanted = None if names is None else set(names)
    for x in inputs():
        if x.derive is None or (wanted is not None and x.name not in wanted):
            continue
        d = DERIVATIONS[x.derive]
        if not all(r in df.columns or r in vectors for r in d.reads):
            continue
        cols = {r: vectors[r] if r in vectors else df[r].to_numpy() for r in d.reads}
        df[x.name] = d(cols)
    return frame
