"""Feature pipeline timings: tables, materialisation, training set, online lookup latency.

Per profile (tiny, default; large with ``--large``): the batch is simulated in a
subprocess (not timed, and not counted in this process's peak RSS), then
``build_features`` (the text encoder replaced by a 384-dim random stand-in, so the
figure is the table computation alone: bench_embeddings measures encoding), then
``materialize`` into SQLite (and into Redis when ``redis-server`` is installed), then
``training_set`` on each offline engine (``features.offline_engine``): Feast's file store,
then DuckDB, on the same tables in the same run, with DuckDB's time over Feast's (for large
only with ``--large-training-set``: Feast's join is the slowest step; ``--engines duckdb``
leaves it out). Online latency: one
``get_online_features`` call of the models' feature service for 1 and for 100 items of one user
and query, p50/p99 over repeated calls, per online store; next to it the same lookups
through ``OnlineReader`` (shoprank.features.online), interleaved with Feast's in three
rounds (medians of the rounds) and the speed-up measured in the same run; with each,
the p50 of the call's CPU time (steady where other jobs share the cores). For 100 items a
machine-noise reference runs in the same rounds: a fixed pure-Python loop sized to the
reader's median, whose p99/p50 is what the shared cores do to any call that long. The reader
reads the store on every call (its only memo is of decoded string values by their
bytes, a pure function of the stored value).
Run: `python -m bench.bench_features [--large [--large-training-set]] [--no-training-set] [--lookups N]
[--profiles tiny,default] [--engines feast,duckdb] [--no-online]`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.hardware import describe
from bench.measure import latency, peak_rss_gib, redis_server, reference_work, reset_peak
from bench.results import row
from shoprank.artifacts import FEATURE_SERVICE
from shoprank.config import load_params
from shoprank.features import build_features, materialize, online_features, open_store, training_set
from shoprank.features.store import copy_repo

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "features"  # the project's Feast repository; tests and benchmarks use private copies
DIM = 384  # all-MiniLM-L6-v2
ENGINES = ("feast", "duckdb")  # features.offline_engine, in the order they are timed


def stand_in_embed(texts: list[str]) -> np.ndarray:
    return np.random.default_rng(len(texts)).standard_normal((len(texts), DIM), dtype=np.float32)


READER_CALLS = 1000  # OnlineReader calls per round (cheap: a few seconds)


def lookups(settings, batch: Path, repeats: int, rounds: int = 3) -> dict:
    """Feast's ``online_features`` and the fast ``OnlineReader`` on the same rows, same store, same run.

    Per size (1 and 100 items of one user and query): ``rounds`` rounds, each timing
    Feast then the reader (Feast ``repeats`` calls, a quarter of that for 100 items; the reader
    ``READER_CALLS``);
    the medians of the rounds' p50 and p99, and Feast's p50 / the reader's p50.
    """
    imp = pd.read_parquet(batch / "impressions.parquet", columns=["user_id", "query", "item_id"])
    from shoprank.features import OnlineReader, query_id

    search = imp[imp["query"] != ""].iloc[0]
    items = imp["item_id"].drop_duplicates().head(100).astype(str).tolist()
    base = {"user_id": str(search["user_id"]), "query_id": query_id(str(search["query"]))}
    store = open_store(settings)
    out = {}
    with OnlineReader(settings, FEATURE_SERVICE) as reader:
        for label, rows, n in (
            ("1_item", [{**base, "item_id": items[0]}], repeats),
            ("100_items", [{**base, "item_id": i} for i in items], max(repeats // 4, 10)),
        ):
            feast_runs, fast_runs, ref_runs = [], [], []
            ref = None
            if label == "100_items":  # sized to the reader's median on this machine, now
                ref = reference_work(latency(lambda rows=rows: reader.read(rows), 200)["p50_ms"] / 1000)
            for _ in range(rounds):  # interleaved, so both see the same machine load
                feast_runs.append(latency(lambda rows=rows: online_features(store, FEATURE_SERVICE, rows), n))
                # 1,000 calls a round: a p99 is then the 10th slowest call, not the 2nd
                fast_runs.append(latency(lambda rows=rows: reader.read(rows), max(n, READER_CALLS)))
                if ref is not None:
                    ref_runs.append(latency(ref, READER_CALLS))
            stats = ("p50_ms", "p99_ms", "cpu_p50_ms")
            feast: dict[str, Any] = {k: round(float(np.median([r[k] for r in feast_runs])), 3) for k in stats}
            fast: dict[str, Any] = {k: round(float(np.median([r[k] for r in fast_runs])), 3) for k in stats}
            out[label] = feast
            out[f"fast_{label}"] = {
                **fast,
                "rounds": fast_runs,
                "speedup_p50": round(feast["p50_ms"] / fast["p50_ms"], 1),
                "speedup_p99": round(feast["p99_ms"] / fast["p99_ms"], 1),
            }
            if ref_runs:
                noise: dict[str, Any] = {
                    k: round(float(np.median([r[k] for r in ref_runs])), 3) for k in stats
                }
                out[f"noise_{label}"] = {
                    **noise,
                    "rounds": ref_runs,
                    "p99_over_p50": round(noise["p99_ms"] / noise["p50_ms"], 2),
                    "reader_p99_over_p50": round(fast["p99_ms"] / fast["p50_ms"], 2),
                }
    return out


def training_sets(settings, batch: Path, tables: Path, root: Path, engines: tuple[str, ...]) -> dict:
    """The training set's seconds on each engine, same tables, same run; the outputs must agree."""
    out: dict[str, Any] = {}
    shapes = set()
    for engine in engines:
        s = settings.model_copy(update={"offline_engine": engine})
        got = training_set(s, batch, tables, root / f"train_{engine}.parquet")
        out["training_set_s" if engine == "feast" else f"training_set_{engine}_s"] = got["seconds"]
        shapes.add((got["rows"], tuple(got["columns"])))
    if len(shapes) > 1:
        raise RuntimeError(f"the engines {engines} wrote training sets of different shapes")
    return out


def measure(
    profile: str,
    work: Path,
    redis_url: str | None,
    with_training: bool,
    repeats: int,
    engines: tuple[str, ...] = ENGINES,
    online: bool = True,
) -> dict:
    params = load_params(ROOT / "params.yaml")
    per_profile = reset_peak()
    batch = work / profile / "batch"
    cmd = [sys.executable, "-m", "shoprank.cli", "simulate", "--profile", profile, "--out", str(batch)]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = work / profile / "sqlite"
    settings = params.features.model_copy(update={"repo": copy_repo(REPO, root)})
    tables = root / "data" / "features"
    built = build_features(batch, tables, settings, stand_in_embed)
    out = {"profile": profile, "impressions": built["impressions"], "features_s": built["seconds"]["total"]}
    out["feature_rows"] = sum(built["rows"].values())
    if online:
        out["materialize_sqlite_s"] = materialize(settings, tables)["seconds"]
        out["lookup_sqlite"] = lookups(settings, batch, repeats)
    if online and redis_url is not None:
        rroot = work / profile / "redis"
        shutil.copytree(root / "data" / "features", rroot / "data" / "features")
        rsettings = settings.model_copy(
            update={
                "repo": copy_repo(REPO, rroot),
                "online_store": "redis",
                "redis_url": redis_url,
            }
        )
        out["materialize_redis_s"] = materialize(rsettings, rroot / "data" / "features")["seconds"]
        out["lookup_redis"] = lookups(rsettings, batch, repeats)
    if with_training:
        out.update(training_sets(settings, batch, tables, root, engines))
    out["peak_rss_gib"] = peak_rss_gib()
    out["peak_rss_scope"] = "this profile" if per_profile else "process so far"
    return out


def run(
    large: bool = False,
    with_training: bool = True,
    repeats: int = 200,
    large_training: bool = False,
    profiles: list[str] | None = None,
    engines: tuple[str, ...] = ENGINES,
    online: bool = True,
) -> dict:
    profiles = (profiles or ["tiny", "default"]) + (["large"] if large else [])
    import feast  # noqa: F401  (seconds to import: paid here, not by the first timing)

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp, redis_server() as redis_url:
        for profile in profiles:
            training = large_training if profile == "large" else with_training
            results.append(measure(profile, Path(tmp), redis_url, training, repeats, engines, online))
    redis = redis_url is not None
    return {"hardware": describe(), "redis": redis, "results": results, "peak_rss_gib": peak_rss_gib()}


def _fmt(lat: dict | None, prefix: str = "") -> str:
    if not lat:
        return "n/a"
    one, hundred = lat[prefix + "1_item"], lat[prefix + "100_items"]
    text = (
        f"{one['p50_ms']}/{one['p99_ms']} ms (1 item), {hundred['p50_ms']}/{hundred['p99_ms']} ms (100 items)"
        f"; CPU p50 {one['cpu_p50_ms']} / {hundred['cpu_p50_ms']} ms"
    )
    if prefix:
        text += f"; vs Feast p50 x{one['speedup_p50']} / x{hundred['speedup_p50']}"
    return text


def _noise(lat: dict | None) -> None:
    noise = (lat or {}).get("noise_100_items")
    if noise:
        print(
            f"    machine-noise reference (a CPU-bound loop of the reader's median, same rounds): "
            f"{noise['p50_ms']}/{noise['p99_ms']} ms, p99/p50 {noise['p99_over_p50']} "
            f"(the reader's: {noise['reader_p99_over_p50']})"
        )


def lookup_rows(prefix: str, lat: dict) -> list[dict]:
    """The reader's latencies against Feast's on the same rows, and its tail against the noise loop."""
    found = []
    for size, label in (("100_items", "100 items"), ("1_item", "1 item")):
        feast, fast = lat[size], lat[f"fast_{size}"]
        for stat in ("p99_ms", "p50_ms"):
            name = f"{prefix}, OnlineReader, {label}, {stat[:3]}"
            found.append(row(name, fast[stat], "ms", f"Feast get_online_features, {stat[:3]}", feast[stat]))
    noise = lat.get("noise_100_items")
    if noise:
        found.append(
            row(
                f"{prefix}, OnlineReader, 100 items, p99 / p50",
                noise["reader_p99_over_p50"],
                "",
                "machine-noise loop of the same length, p99 / p50",
                noise["p99_over_p50"],
            )
        )
    return found


def rows(out: dict) -> list[dict]:
    """Per profile: the online reads first (the default profile's 100-item read leads), then timings."""
    results = sorted(out["results"], key=lambda r: r["profile"] != "default")
    found = []
    for r in results:
        name = r["profile"]
        if "lookup_sqlite" in r:
            found += lookup_rows(f"{name}, SQLite", r["lookup_sqlite"])
        if "lookup_redis" in r:
            found += lookup_rows(f"{name}, Redis", r["lookup_redis"])
    for r in results:
        name = r["profile"]
        found.append(row(f"{name}: build_features (text encoder excluded)", r["features_s"], "s"))
        if "materialize_sqlite_s" in r:
            found.append(row(f"{name}: materialize, SQLite", r["materialize_sqlite_s"], "s"))
        if "materialize_redis_s" in r:
            found.append(
                row(
                    f"{name}: materialize, Redis",
                    r["materialize_redis_s"],
                    "s",
                    "materialize, SQLite",
                    r["materialize_sqlite_s"],
                )
            )
        feast = r.get("training_set_s")
        if "training_set_duckdb_s" in r:
            found.append(
                row(
                    f"{name}: training_set, DuckDB (point-in-time join)",
                    r["training_set_duckdb_s"],
                    "s",
                    None if feast is None else "training_set, Feast file store",
                    feast,
                )
            )
        elif feast is not None:
            found.append(row(f"{name}: training_set, Feast file store (point-in-time join)", feast, "s"))
        found.append(row(f"{name}: peak RSS ({r['peak_rss_scope']})", r["peak_rss_gib"], "GiB"))
    return found


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", action="store_true", help="also the large profile (~6M impressions)")
    ap.add_argument("--no-training-set", action="store_true", help="skip the training-set timing")
    ap.add_argument("--large-training-set", action="store_true", help="with --large: its training set (slow)")
    ap.add_argument("--lookups", type=int, default=200, help="online lookups per latency figure")
    ap.add_argument(
        "--profiles", default="tiny,default", help="comma-separated profiles (default: tiny,default)"
    )
    ap.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="offline engines timed for the training set (feast,duckdb)",
    )
    ap.add_argument("--no-online", action="store_true", help="skip materialisation and the online lookups")
    args = ap.parse_args(argv)
    profiles = [p for p in args.profiles.split(",") if p]
    engines = tuple(e for e in args.engines.split(",") if e)
    if set(engines) - set(ENGINES):
        ap.error(f"--engines: choose from {', '.join(ENGINES)}")
    out = run(
        args.large,
        not args.no_training_set,
        args.lookups,
        args.large_training_set,
        profiles,
        engines,
        not args.no_online,
    )
    print(f"feature pipeline on {out['hardware']}")
    for r in out["results"]:
        print(f"\n{r['profile']}: {r['impressions']:,} impressions -> {r['feature_rows']:,} feature rows")
        print(f"  build_features     {r['features_s']:8.2f} s  (text encoder excluded)")
        if "materialize_sqlite_s" in r:
            print(f"  materialize sqlite {r['materialize_sqlite_s']:8.2f} s")
        if "materialize_redis_s" in r:
            print(f"  materialize redis  {r['materialize_redis_s']:8.2f} s")
        if "training_set_s" in r:
            print(
                f"  training_set feast {r['training_set_s']:8.2f} s  (point-in-time join, Feast file store)"
            )
        if "training_set_duckdb_s" in r:
            ratio = (
                f", x{r['training_set_duckdb_s'] / r['training_set_s']:.3f} of Feast's"
                if "training_set_s" in r
                else ""
            )
            print(f"  training_set duckdb{r['training_set_duckdb_s']:8.2f} s  (point-in-time join{ratio})")
        print(f"  online p50/p99 sqlite, Feast:       {_fmt(r.get('lookup_sqlite'))}")
        print(f"  online p50/p99 sqlite, OnlineReader: {_fmt(r.get('lookup_sqlite'), 'fast_')}")
        _noise(r.get("lookup_sqlite"))
        print(f"  online p50/p99 redis,  Feast:       {_fmt(r.get('lookup_redis'))}")
        print(f"  online p50/p99 redis,  OnlineReader: {_fmt(r.get('lookup_redis'), 'fast_')}")
        _noise(r.get("lookup_redis"))
        print(f"  peak RSS {r['peak_rss_gib']} GiB ({r['peak_rss_scope']})")
    if not out["redis"]:
        print("\nredis-server not installed: Redis figures skipped")
    return {"rows": rows(out), "figures": out}


if __name__ == "__main__":
    main()
