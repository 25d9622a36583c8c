"""`python -m bench` (`make bench`): every benchmark at its default size, then the results file.

Each module prints its own figures, the hardware and its in-run baseline, and returns them;
this collects them into bench/results.json (see bench.results) and regenerates
docs/benchmarks.md and the README's table from it (bench.report). ``--only`` runs some
benchmarks and keeps the others' entries when the file holds figures of the same machine.
Run a module alone (`python -m bench.bench_simulate --large`, ...) for other sizes or
options: that prints its figures and leaves the results file as it is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import report
from bench.hardware import describe
from bench.results import BENCHMARKS, RESULTS, collect, load, merge, save


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    ap.add_argument("--out", type=Path, default=RESULTS, help="the results file (default bench/results.json)")
    ap.add_argument("--no-docs", action="store_true", help="do not regenerate the README's and docs' tables")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    entries, failed = collect(names)
    data = merge(load(args.out), entries, describe())
    save(data, args.out)
    print(f"\nresults: {args.out}")
    if not args.no_docs:
        report.update(args.out)
        print(f"tables: {report.PAGE}, {report.README}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
