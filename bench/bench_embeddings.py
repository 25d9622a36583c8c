"""Embedding throughput (texts per second): cold encoding vs warm cache lookups.

Real all-MiniLM-L6-v2 weights, product-title-like texts long enough to fill all
``max_length`` (32) tokens. Cold: every text goes through the model, once bare
(``TextEncoder.encode``, PyTorch) and once through an empty ``EmbeddingCache`` (adds hashing and
the durable Parquet write); and bare on ONNX Runtime (``text.runtime: onnx``, what
``shoprank features`` uses on CPU by default: the graph exported and parity-checked
first, not timed). Warm: the same texts again from the cache, in memory, and
from a freshly opened cache object (reads the shard from disk first). The baseline is
the bare cold encode measured in the same run; the ratio is warm / cold.
Run: `python -m bench.bench_embeddings [--texts N] [--repeats N]`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

from bench.hardware import describe
from bench.results import row
from shoprank.config import load_params
from shoprank.data.vocab import CATALOG_TREE
from shoprank.text import EmbeddingCache, load_encoder


def product_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct product descriptions, each well over 32 word pieces."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        top = rng.choice(CATALOG_TREE)
        ptype = rng.choice(rng.choice(list(top.subcategories.values())))
        words = [
            f"sku {i}",
            rng.choice(top.brands),
            rng.choice(top.colours),
            rng.choice(top.materials),
            rng.choice(ptype.title_names),
        ]
        words += rng.sample(ptype.features, len(ptype.features)) * 3
        out.append(" ".join(words) + f", {top.name.lower()} for everyday use")
    return out


def median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(n_texts: int = 1000, repeats: int = 3, warm_repeats: int = 30) -> dict:
    settings = load_params().text
    load_before = os.getloadavg()[0]  # other work on the machine slows the cold (CPU-bound) side most
    start = time.perf_counter()
    encoder = load_encoder(settings)
    load_s = time.perf_counter() - start
    texts = product_texts(n_texts)
    lengths = [min(len(ids), settings.max_length) for ids in encoder.tokenizer(texts)["input_ids"]]
    encoder.encode(texts[:64])  # warm-up: first-call allocations are not throughput

    cold_encode = median_s(lambda: encoder.encode(texts), repeats)
    cold_onnx = onnx_diff = None
    with tempfile.TemporaryDirectory() as tmp:
        from shoprank.text.onnx_encoder import batch_encoder

        onnx = batch_encoder(encoder, "onnx", tmp)
        reference_vectors = encoder.encode(texts)
        onnx_vectors = onnx.encode(texts)  # exports and checks the graph (untimed), then encodes
        if onnx.runtime == "onnx":
            cold_onnx = median_s(lambda: onnx.encode(texts), repeats)
            onnx_diff = float(np.abs(onnx_vectors - reference_vectors).max())
    with tempfile.TemporaryDirectory() as tmp:
        dirs = iter(range(repeats))
        cold_cache = median_s(
            lambda: EmbeddingCache(f"{tmp}/{next(dirs)}", encoder.key).embed(texts, encoder), repeats
        )
        cache = EmbeddingCache(f"{tmp}/0", encoder.key)
        reference = cache.embed(texts, encoder)  # loads the shard once; every later call is a pure hit
        warm = median_s(lambda: cache.embed(texts, encoder), warm_repeats)
        reopen = median_s(lambda: EmbeddingCache(f"{tmp}/0", encoder.key).embed(texts, encoder), repeats * 3)
        check = EmbeddingCache(f"{tmp}/0", encoder.key).embed(texts, encoder)
        if not np.array_equal(check, reference):
            raise AssertionError("warm vectors differ from the cold ones")

    rate = {
        name: n_texts / s
        for name, s in [
            ("cold_encode", cold_encode),
            *([("cold_onnx", cold_onnx)] if cold_onnx else []),
            ("cold_cache", cold_cache),
            ("warm", warm),
            ("warm_reopen", reopen),
        ]
    }
    import torch

    return {
        "hardware": describe(),
        "nproc": len(os.sched_getaffinity(0)),
        "device": encoder.device,
        "torch_threads": torch.get_num_threads(),
        "model": encoder.key,
        "texts": n_texts,
        "tokens_per_text": (min(lengths), max(lengths)),
        "load_s": round(load_s, 2),
        "texts_per_s": {k: round(v, 1) for k, v in rate.items()},
        "warm_over_cold_encode": round(rate["warm"] / rate["cold_encode"], 1),
        "onnx_max_abs_diff": onnx_diff,
        "warm_reopen_over_cold_encode": round(rate["warm_reopen"] / rate["cold_encode"], 1),
        "load_avg_1min": (round(load_before, 2), round(os.getloadavg()[0], 2)),
        "repeats": {"cold": repeats, "warm": warm_repeats, "warm_reopen": repeats * 3},
    }


LABELS = {
    "cold_onnx": "cold: ONNX Runtime encode",
    "warm": "warm: cache .embed (in memory)",
    "warm_reopen": "warm: reopened cache .embed",
    "cold_cache": "cold: empty cache .embed",
    "cold_encode": "cold: TextEncoder.encode",
}


def rows(out: dict) -> list[dict]:
    """Every rate against the bare PyTorch encode of the same texts in the same run."""
    rates = out["texts_per_s"]
    base = ("PyTorch encode, cold", rates["cold_encode"])
    found = [row(LABELS[k], rates[k], "texts/s", *base) for k in LABELS if k != "cold_encode" and k in rates]
    return found + [row("model load", out["load_s"], "s")]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each cold measurement (median)")
    args = ap.parse_args(argv)
    out = run(args.texts, args.repeats)
    lo, hi = out["tokens_per_text"]
    print(f"embedding throughput on {out['hardware']}")
    print(
        f"nproc {out['nproc']}, device {out['device']}, torch threads {out['torch_threads']}, "
        f"1-min load average before/after {out['load_avg_1min']}"
    )
    print(f"model {out['model']} (loaded in {out['load_s']} s); {out['texts']} texts of {lo}-{hi} tokens")
    base = out["texts_per_s"]["cold_encode"]
    print(f"{'measurement':32s} {'texts/s':>12s} {'x cold':>8s}  median of")
    labels = {k: LABELS[k] for k in ("cold_encode", "cold_onnx", "cold_cache", "warm", "warm_reopen")}
    runs = {key: "cold" for key in ("cold_encode", "cold_onnx", "cold_cache")}
    runs.update(warm="warm", warm_reopen="warm_reopen")
    for key, label in labels.items():
        if key not in out["texts_per_s"]:
            print(f"{label:32s} {'unavailable':>12s}")
            continue
        value = out["texts_per_s"][key]
        print(f"{label:32s} {value:12,.1f} {value / base:8.1f}  {out['repeats'][runs[key]]}")

    if out["onnx_max_abs_diff"] is not None:
        print(f"ONNX vectors vs PyTorch: largest component difference {out['onnx_max_abs_diff']:.1e}")
    return {"rows": rows(out), "figures": out}


if __name__ == "__main__":
    main()
