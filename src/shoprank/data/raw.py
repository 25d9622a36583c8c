"""`shoprank raw`: the pipeline's first step, the raw batch from ``data.source``.

``simulate`` writes a seeded marketplace with its ground truth; ``import`` maps the shop's
own files (``import:`` in params.yaml) onto the contract. Every later step reads
``paths.raw`` the same way whichever produced it, so `dvc repro` and the Airflow DAGs
run unchanged on imported logs.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from shoprank.config import Params, Simulate
from shoprank.data.schema import TABLES, check_table
from shoprank.logs import log

if TYPE_CHECKING:
    from shoprank.data.importer import Imported

logger = logging.getLogger(__name__)


def simulate_batch(
    settings: Simulate, out: Path, profile: str | None = None, seed: int | None = None
) -> dict:
    """Simulate and write contract tables to ``out``, ground truth to ``out/truth``; the summary."""
    from shoprank.data.simulator import simulate, write_simulation
    from shoprank.data.simulator.run import TRUTH_DIR

    sim = simulate(settings, profile, seed)
    for name, df in sim.tables.items():  # the contract holds before anything is written
        check_table(df, TABLES[name])
    write_simulation(sim, out)
    (Path(out) / TRUTH_DIR / "summary.json").write_text(json.dumps(sim.summary, indent=2))
    return sim.summary


def import_batch(params: Params, out: Path) -> Imported:
    """Import the shop's files into ``out``; an imported log has no ground truth, so none is left."""
    from shoprank.data.importer import import_tables
    from shoprank.data.simulator.run import TRUTH_DIR

    imported = import_tables(params.import_, params.data, out)
    stale = Path(out) / TRUTH_DIR  # a simulated batch's truth would be taken for this log's
    if stale.exists():
        shutil.rmtree(stale)
    return imported


def produce_raw(params: Params) -> dict:
    """The raw batch of ``data.source`` in ``paths.raw``: what was run and what it wrote."""
    out = Path(params.paths.raw)
    result: dict[str, object]
    if params.data.source == "simulate":
        summary = simulate_batch(params.simulate, out)
        result = {"source": "simulate", "profile": params.simulate.profile, "summary": summary}
    else:
        result = {"source": "import", "imported": import_batch(params, out)}
    log(logger, "raw batch", source=params.data.source, out=str(out))
    return result
