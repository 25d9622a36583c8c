"""A simulated batch written chunk by chunk: memory bounded by ``simulate.chunk_requests``.

The requests are simulated a chunk at a time (:func:`~shoprank.data.simulator.run.sessions`)
and each chunk's impressions and truth rows are appended to their Parquet files as one row
group, then dropped, so the rows held at once follow the setting, not the number of
requests. A chunk is a whole number of the simulator's blocks, which draw from one
random generator in order: the files hold the same rows whatever the chunk size, the
same as :func:`~shoprank.data.simulator.run.simulate` gives in memory. The files appear
only when every chunk is written (:class:`~shoprank.data.staged.Staged`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shoprank.data.schema import TABLES, conform
from shoprank.data.simulator import run
from shoprank.data.simulator.run import TRUTH_DIR, Marketplace, chunk_tables, sessions, static_tables
from shoprank.data.simulator.summary import Summary
from shoprank.data.staged import Staged
from shoprank.logs import log

logger = logging.getLogger(__name__)
SETTING = "simulate.chunk_requests"
Shape = Callable[[dict[str, pd.DataFrame]], dict[str, pd.DataFrame]]  # named frames -> as written


@dataclass
class Written:
    summary: dict
    chunks: int
    requests_per_chunk: int
    rows_held: int  # the most rows of one chunk's tables held at once


def requests_per_chunk(chunk_requests: int) -> int:
    """``simulate.chunk_requests`` rounded up to whole blocks of the simulator's (``run.CHUNK`` requests)."""
    if chunk_requests <= 0:
        raise ValueError(f"{SETTING} must be positive, not {chunk_requests}")
    return -(-chunk_requests // run.CHUNK) * run.CHUNK


def named(tables: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Contract tables by name, truth tables as ``truth/<name>``: the files' names without suffix."""
    return {**tables, **{f"{TRUTH_DIR}/{k}": v for k, v in truth.items()}}


def write_batch(m: Marketplace, out: Path, chunk_requests: int, shape: Shape) -> Written:
    """Simulate ``m``'s requests chunk by chunk into ``out`` (truth in ``out/truth``).

    ``shape`` turns each chunk's named frames into what is written (pseudonyms, erasure,
    the contract check); the summary is that of the rows written.
    """
    step, n = requests_per_chunk(chunk_requests), len(m.req)
    summary, held, start = Summary(), 0, time.perf_counter()
    with Staged(out, SETTING, "shoprank raw") as staged:
        static = shape(named(*static_tables(m)))
        for name, df in static.items():
            _append(staged, name, df)
        chunks = range(0, n, step)
        for k, lo in enumerate(chunks):
            impressions, truth = chunk_tables(m, lo, sessions(m, lo, min(lo + step, n)))
            frames = shape(named({"impressions": impressions}, truth))
            del impressions, truth
            held = max(held, sum(len(df) for df in frames.values()))
            p_click = frames[f"{TRUTH_DIR}/impressions"]["p_click"].to_numpy()
            summary.add(frames["impressions"], p_click, frames[f"{TRUTH_DIR}/requests"])
            for name, df in frames.items():
                _append(staged, name, df)
            del frames
            log(
                logger,
                "simulated chunk",
                chunk=f"{k + 1}/{len(chunks)}",
                requests=min(lo + step, n),
                of=n,
                seconds=round(time.perf_counter() - start, 1),
            )
        figures = summary.result(static["catalog"], static["users"])
        staged.write_text(f"{TRUTH_DIR}/summary.json", json.dumps(figures, indent=2))
    log(logger, "written", out=str(out), chunks=len(chunks), requests_per_chunk=step, rows_held=held)
    return Written(figures, len(chunks), step, held)


def _append(staged: Staged, name: str, df: pd.DataFrame) -> None:
    table = conform(df, TABLES[name]) if name in TABLES else df  # contract tables: canonical dtypes
    staged.append(f"{name}.parquet", table)
