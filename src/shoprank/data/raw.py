"""`shoprank raw`: the pipeline's first step, the raw batch from ``data.source``.

``simulate`` writes a seeded marketplace with its ground truth; ``import`` maps the shop's
own files (``import:`` in params.yaml) onto the contract. Every later step reads
``paths.raw`` the same way whichever produced it, so `dvc repro` and the Airflow DAGs
run unchanged on imported logs. Both name shoppers by pseudonym and leave out erased
shoppers (:mod:`shoprank.privacy`).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from shoprank.config import Params, Simulate
from shoprank.data.schema import TABLES, check_table
from shoprank.logs import log
from shoprank.privacy import Shoppers

if TYPE_CHECKING:
    from shoprank.data.importer import Imported

logger = logging.getLogger(__name__)


def simulate_batch(
    settings: Simulate, out: Path, shoppers: Shoppers, profile: str | None = None, seed: int | None = None
) -> dict:
    """Simulate and write contract tables to ``out``, ground truth to ``out/truth``; the summary.

    The requests are simulated and written ``simulate.chunk_requests`` at a time
    (:mod:`shoprank.data.simulator.write`), so memory does not follow the profile's size.
    The simulated shoppers are named as the service will name them: their ids
    (``user_000042``) become pseudonyms under ``shoppers``' key in every table, truth
    included, so a request for ``user_000042`` finds its features; erased ones are left out.
    Every chunk of a contract table is checked against the contract before it is written.
    """
    from shoprank.data.simulator.run import prepare
    from shoprank.data.simulator.write import write_batch

    def shape(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        frames = shielded(frames, shoppers)
        for name, df in frames.items():
            if name in TABLES:
                check_table(df, TABLES[name])
        return frames

    return write_batch(prepare(settings, profile, seed), Path(out), settings.chunk_requests, shape).summary


def shielded(named: dict[str, pd.DataFrame], shoppers: Shoppers) -> dict[str, pd.DataFrame]:
    """``named`` frames with pseudonyms for user ids; the rows of erased shoppers' requests removed."""
    named = dict(named)
    gone: set[str] = set()
    for name, df in named.items():
        if "user_id" in df:  # a new frame: the caller's keeps the ids it builds later chunks from
            df = named[name] = df.assign(user_id=shoppers.pseudonymise(df["user_id"]).astype(object))
            if "request_id" in df:
                gone |= set(df.loc[~shoppers.kept(df["user_id"]), "request_id"])
    for name, df in named.items():
        keep = shoppers.kept(df["user_id"]) if "user_id" in df else np.ones(len(df), dtype=bool)
        if "request_id" in df and gone:
            keep &= ~df["request_id"].isin(gone).to_numpy(dtype=bool)
        if not keep.all():
            named[name] = df[keep].reset_index(drop=True)
    return named


def shoppers_of(params: Params) -> Shoppers:
    """The deployment's pseudonym key and erasure list, as params.yaml's paths say."""
    return Shoppers.load(params.paths.secrets, params.paths.erasure)


def import_batch(params: Params, out: Path) -> Imported:
    """Import the shop's files into ``out``; an imported log has no ground truth, so none is left."""
    from shoprank.data.importer import import_tables
    from shoprank.data.simulator.run import TRUTH_DIR

    imported = import_tables(params.import_, params.data, out, shoppers_of(params))
    stale = Path(out) / TRUTH_DIR  # a simulated batch's truth would be taken for this log's
    if stale.exists():
        shutil.rmtree(stale)
    return imported


def produce_raw(params: Params) -> dict:
    """The raw batch of ``data.source`` in ``paths.raw``: what was run and what it wrote."""
    out = Path(params.paths.raw)
    result: dict[str, object]
    if params.data.source == "simulate":
        summary = simulate_batch(params.simulate, out, shoppers_of(params))
        result = {"source": "simulate", "profile": params.simulate.profile, "summary": summary}
    else:
        result = {"source": "import", "imported": import_batch(params, out)}
    log(logger, "raw batch", source=params.data.source, out=str(out))
    return result
