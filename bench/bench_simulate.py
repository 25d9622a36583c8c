"""Simulation throughput (impressions per second) for the default and large profiles.

The baseline is the first profile (``--profile``, default ``default``) measured in the
same run: the large profile's ratio to it shows how the vectorised simulator scales
(1.0 = linear), and the rate with the Parquet write beside the bare simulation shows
what writing costs. Run: `python -m bench.bench_simulate [--large] [--repeats N] [--profile NAME]`.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench.hardware import describe
from bench.results import row
from shoprank.config import load_params
from shoprank.data.simulator import simulate, write_simulation


def measure(profile: str, repeats: int) -> dict:
    settings = load_params().simulate
    sim_s, write_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        sim = simulate(settings, profile)
        sim_s.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            write_simulation(sim, Path(tmp))
            write_s.append(time.perf_counter() - start)
        n = len(sim.tables["impressions"])
        del sim
    sim_med, write_med = statistics.median(sim_s), statistics.median(write_s)
    return {
        "profile": profile,
        "impressions": n,
        "simulate_s": round(sim_med, 2),
        "write_s": round(write_med, 2),
        "impressions_per_s": round(n / sim_med),
        "impressions_per_s_with_write": round(n / (sim_med + write_med)),
    }


def run(large: bool = False, repeats: int = 3, profile: str = "default") -> dict:
    results = [measure(profile, repeats)]
    if large:
        results.append(measure("large", 1))
    base = results[0]["impressions_per_s"]
    for r in results:
        r["ratio_to_first"] = round(r["impressions_per_s"] / base, 2)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"hardware": describe(), "results": results, "peak_rss_gib": round(peak, 2)}


def rows(out: dict) -> list[dict]:
    """The first profile's rate with and without the write, and each other profile's against it."""
    first, *others = out["results"]
    name = first["profile"]
    base = (f"{name} profile, simulation only", first["impressions_per_s"])
    with_write = first["impressions_per_s_with_write"]
    found = [row(f"{name} profile: simulation + Parquet write", with_write, "impressions/s", *base)]
    found.append(row(f"{name} profile: simulation", first["impressions_per_s"], "impressions/s"))
    for r in others:
        found.append(
            row(f"{r['profile']} profile: simulation", r["impressions_per_s"], "impressions/s", *base)
        )
    found.append(row("peak RSS", out["peak_rss_gib"], "GiB"))
    return found


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--large", action="store_true", help="also the large profile (~6M impressions)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", default="default", help="the profile measured first (the baseline)")
    args = ap.parse_args(argv)
    out = run(args.large, args.repeats, args.profile)
    print(f"simulation throughput on {out['hardware']} (median of {args.repeats} for {args.profile})")
    print(
        f"{'profile':8s} {'impressions':>12s} {'simulate s':>11s} {'write s':>8s} {'impr/s':>10s} "
        f"{'impr/s incl. write':>19s} {'x first':>9s}"
    )
    for r in out["results"]:
        print(
            f"{r['profile']:8s} {r['impressions']:12,d} {r['simulate_s']:11.2f} {r['write_s']:8.2f} "
            f"{r['impressions_per_s']:10,d} {r['impressions_per_s_with_write']:19,d} "
            f"{r['ratio_to_first']:9.2f}"
        )
    print(f"peak RSS {out['peak_rss_gib']} GiB")
    return {"rows": rows(out), "figures": out}


if __name__ == "__main__":
    main()
