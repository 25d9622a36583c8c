"""The benchmarks' results file: what `make bench` writes and the docs' tables are made from.

``bench/results.json`` holds one entry per benchmark, keyed by its name in
:data:`BENCHMARKS`::

    {"format": 1,
     "hardware": "2 cores, <CPU>, 24 GiB RAM, Python 3.11.x",   # bench.hardware.describe()
     "benchmarks": {
       "simulate": {
         "title": "...", "command": "python -m bench.bench_simulate",
         "rows": [{"measure": "...", "value": 1.0, "unit": "...",
                   "baseline": {"measure": "...", "value": 1.0, "unit": "..."} | null,
                   "ratio": 1.0 | null}, ...],
         "figures": {...},          # everything the module measured, as it returned it
         "skipped": "why" | absent  # the module could not run here (no packaged model, ...)
       }, ...}}

Each module's ``main(argv)`` returns ``{"rows": [...], "figures": {...}}`` (or
``{"skipped": "why"}``); a row's ``ratio`` is its value over its baseline's, both measured
in the same run. The first row of a benchmark is its headline (the README's table).
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
FORMAT = 1

# name -> (module, title, the command that reproduces it); the order of `make bench`
BENCHMARKS: dict[str, tuple[str, str, str]] = {
    "simulate": ("bench.bench_simulate", "Simulation throughput", "python -m bench.bench_simulate"),
    "embeddings": ("bench.bench_embeddings", "Text embedding", "python -m bench.bench_embeddings"),
    "features": (
        "bench.bench_features",
        "Feature tables, materialisation, training set, online reads",
        "python -m bench.bench_features",
    ),
    "train": ("bench.bench_train", "BERT-CTR training throughput", "python -m bench.bench_train"),
    "train_memory": (
        "bench.bench_train_memory",
        "`shoprank train` peak memory, streamed in chunks against the split at once",
        "python -m bench.bench_train_memory",
    ),
    "scale": (
        "bench.bench_scale",
        "Every pipeline stage per profile: wall time and peak memory beside the previous path",
        "python -m bench.bench_scale",
    ),
    "serving": ("bench.bench_serving", "Serving latency and throughput", "python -m bench.bench_serving"),
    "real": (
        "bench.bench_real",
        "Quality on a real public log (MovieLens 100k, imported)",
        "python -m bench.bench_real",
    ),
    "attainable": (
        "bench.bench_attainable",
        "Ranking quality the features allow",
        "python -m bench.bench_attainable",
    ),
    "encoders": (
        "bench.bench_encoders",
        "The candidates on the stock encoder against the adapted one (default profile, two dvc repro runs)",
        "python -m bench.bench_encoders",
    ),
    "revenue": (
        "bench.bench_revenue",
        "Ranking for sales (default profile, simulator truth)",
        "python -m bench.bench_revenue",
    ),
    "experiment": (
        "bench.bench_experiment",
        "Online experiments: A/B against interleaving (default profile, simulator truth)",
        "python -m bench.bench_experiment",
    ),
    "search": (
        "bench.bench_search",
        "Search relevance end to end: the live /search on held-out queries (simulator truth)",
        "python -m bench.bench_search",
    ),
}


def printed(rows: list[dict[str, Any]], figures: dict[str, Any]) -> dict[str, Any]:
    """Print each row (its ratio to the baseline where it has one); a module's return value."""
    for r in rows:
        ratio = "" if r["ratio"] is None else f"  ratio {r['ratio']:.4f}"
        print(f"{r['measure']}: {r['value']}{ratio}")
    return {"rows": rows, "figures": figures}


def row(
    measure: str,
    value: float | None,
    unit: str,
    baseline: str | None = None,
    baseline_value: float | None = None,
    baseline_unit: str | None = None,
) -> dict[str, Any]:
    """One figure, with the in-run baseline it is compared to and their ratio (value / baseline)."""
    out: dict[str, Any] = {"measure": measure, "value": _number(value), "unit": unit, "baseline": None}
    out["ratio"] = None
    if baseline is not None:
        base = _number(baseline_value)
        out["baseline"] = {"measure": baseline, "value": base, "unit": baseline_unit or unit}
        if out["value"] is not None and base:
            out["ratio"] = round(out["value"] / base, 4)
    return out


def _number(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def entry(name: str, returned: dict[str, Any] | None) -> dict[str, Any]:
    """The results file's entry for benchmark ``name`` from what its ``main`` returned."""
    _, title, command = BENCHMARKS.get(name, (name, name, f"python -m bench.{name}"))
    out: dict[str, Any] = {"title": title, "command": command}
    returned = returned or {"skipped": "the benchmark returned no figures"}
    if "skipped" in returned:
        out["skipped"] = str(returned["skipped"])
    out["rows"] = list(returned.get("rows", []))
    out["figures"] = _jsonable(returned.get("figures", {}))
    return out


def _jsonable(value: Any) -> Any:
    """Tuples become lists, numpy scalars plain numbers, NaN null: what json.dumps can write."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def collect(
    names: Iterable[str],
    load_module: Callable[[str], Any] = importlib.import_module,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Run each named benchmark's ``main([])`` in turn: their entries, and the names that failed.

    A benchmark that raises is recorded as skipped with the error, and the others still run.
    """
    entries, failed = {}, []
    for name in names:
        module_name = BENCHMARKS[name][0] if name in BENCHMARKS else name
        log(f"\n=== {module_name}")
        sys.stdout.flush()
        try:
            returned = load_module(module_name).main([])
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            failed.append(name)
            returned = {"skipped": f"failed: {type(exc).__name__}: {exc}"}
            log(f"{module_name} failed: {type(exc).__name__}: {exc}")
        entries[name] = entry(name, returned)
    return entries, failed


def load(path: Path = RESULTS) -> dict[str, Any]:
    """The results file, or an empty one (nothing measured yet) when it does not exist."""
    if not path.is_file():
        return {"format": FORMAT, "hardware": None, "benchmarks": {}}
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: results format {data.get('format')!r}, expected {FORMAT}")
    return data


def save(data: dict[str, Any], path: Path = RESULTS) -> None:
    """Write the results file atomically (a reader never sees half of it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def merge(old: dict[str, Any], entries: dict[str, dict[str, Any]], hardware: str | None) -> dict[str, Any]:
    """``old`` with ``entries`` replaced, in :data:`BENCHMARKS` order, and the hardware of this run.

    Entries of benchmarks not run this time are kept only when they were measured on the
    same hardware, so the file never mixes machines.
    """
    kept = old.get("benchmarks", {}) if old.get("hardware") == hardware else {}
    merged = {**kept, **entries}
    order = [n for n in BENCHMARKS if n in merged] + [n for n in merged if n not in BENCHMARKS]
    return {"format": FORMAT, "hardware": hardware, "benchmarks": {n: merged[n] for n in order}}
