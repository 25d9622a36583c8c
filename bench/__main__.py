"""`python -m bench` (`make bench`): every benchmark at its default size, one after another.

Each module prints its own figures, the hardware and its in-run baseline; run a module
alone (`python -m bench.bench_simulate --large`, ...) for the large profile or options.
"""

from __future__ import annotations

import sys

from bench import bench_embeddings, bench_features, bench_serving, bench_simulate, bench_train

MODULES = (bench_simulate, bench_embeddings, bench_features, bench_train, bench_serving)

if __name__ == "__main__":
    for module in MODULES:
        print(f"\n=== {module.__name__}", flush=True)
        sys.argv = [module.__name__]
        module.main()
