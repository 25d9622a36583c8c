"""Training throughput (impressions/s) of BERT-CTR, with the no-text network as baseline.

Frozen mode reads cached 384-d embeddings; finetune mode runs the text encoder in the
loop, end to end, on a slice the size of a few tiny-profile batches: the tiny test BERT
(2 layers, 32 wide) and the real MiniLM (6 layers, 384 wide). Inputs are synthetic with
the shapes of the default profile's training set (a clean measure of the model, not of
feature I/O). Run: `python -m bench.bench_train [--rows N] [--finetune-rows N]`.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import pandas as pd

from bench.hardware import describe
from bench.results import row
from shoprank.config import load_params
from shoprank.inputs.frame import Frame
from shoprank.training.train import feature_spec, fit_neural


def synthetic(
    rows: int, items: int = 6000, dim: int = 384, seed: int = 0
) -> tuple[Frame, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [f"item_{i:06d}" for i in range(items)]
    item = rng.integers(items, size=rows)
    df = pd.DataFrame(
        {
            "request_id": np.repeat(np.arange(rows // 20 + 1), 20)[:rows].astype(str),
            "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(np.arange(rows), unit="s"),
            "item_id": np.asarray(ids, dtype=object)[item],
            "query": np.where(rng.random(rows) < 0.75, "some query", ""),
            "position": np.tile(np.arange(1, 21), rows // 20 + 1)[:rows],
            "clicked": (rng.random(rows) < 0.09).astype(np.int8),
            "category": rng.integers(12, size=rows).astype(str),
            "brand": rng.integers(36, size=rows).astype(str),
            "log_price": rng.normal(4, 1, rows),
            "item_age_days": rng.random(rows) * 700,
            "item_ctr_7d": rng.random(rows) * 0.2,
            "user_ctr_7d": rng.random(rows) * 0.2,
            "recent_items": [
                list(np.asarray(ids, dtype=object)[rng.integers(items, size=20)]) for _ in range(rows)
            ],
        }
    )
    table = rng.normal(size=(items, dim)).astype(np.float32)
    vectors = {
        "item_embedding": table[item],
        "query_embedding": rng.normal(size=(rows, dim)).astype(np.float32),
    }
    return Frame(df, vectors), ids, table


def measure(frame: Frame, ids, table, use_text: bool, settings, repeats: int, encoder=None) -> float:
    train = frame.take(np.arange(int(len(frame) * 0.9)))
    val = frame.take(np.arange(int(len(frame) * 0.9), len(frame)))
    spec = feature_spec(list(frame.df.columns))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fit_neural(train, val, spec, ids, table, settings, 20, use_text=use_text, encoder=encoder)
        rates.append(len(train) * settings.max_epochs / (time.perf_counter() - start))
    return statistics.median(rates)


def finetune(rows: int, encoder, settings) -> float:
    """Impressions/s of one end-to-end epoch (the encoder trained too) over ``rows`` impressions."""
    frame, ids, table = synthetic(rows, items=400, dim=encoder.dim)
    frame.df["item_text"] = "trail running shoe " + frame.df["item_id"].astype(str) + ", light and waterproof"
    frame.df["query_text"] = frame.df["query"]  # already normalised
    tuned = settings.model_copy(update={"mode": "finetune", "batch_size": 32})
    return measure(frame, ids, table, True, tuned, 1, encoder=encoder)


def run(rows: int = 200_000, repeats: int = 3, finetune_rows: int = 1024) -> dict:
    from shoprank.text import TextEncoder, load_encoder

    params = load_params()
    settings = params.train.model_copy(update={"max_epochs": 1, "patience": 5})
    frame, ids, table = synthetic(rows)
    base = measure(frame, ids, table, False, settings, repeats)
    bert = measure(frame, ids, table, True, settings, repeats)
    tiny = finetune(finetune_rows * 8, TextEncoder.tiny(), settings)
    real = finetune(finetune_rows, load_encoder(params.text, device="cpu"), settings)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "finetune_rows": finetune_rows,
        "finetune_tiny_per_s": round(tiny),
        "finetune_minilm_per_s": round(real, 1),
        "hardware": describe(),
        "rows": rows,
        "no_text_per_s": round(base),
        "bert_ctr_frozen_per_s": round(bert),
        "ratio": round(bert / base, 2),
        "peak_rss_gib": round(peak, 2),
    }


def rows(out: dict) -> list[dict]:
    """BERT-CTR's rates, each against the no-text network's (frozen: the same rows, same run)."""
    base = ("no-text network", out["no_text_per_s"])
    return [
        row("BERT-CTR, frozen text", out["bert_ctr_frozen_per_s"], "impressions/s", *base),
        row("BERT-CTR, finetune, tiny BERT", out["finetune_tiny_per_s"], "impressions/s", *base),
        row("BERT-CTR, finetune, MiniLM", out["finetune_minilm_per_s"], "impressions/s", *base),
        row("peak RSS", out["peak_rss_gib"], "GiB"),
    ]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--finetune-rows", type=int, default=1024, help="impressions of the MiniLM finetune epoch"
    )
    args = ap.parse_args(argv)
    out = run(args.rows, args.repeats, args.finetune_rows)
    print(
        f"training throughput on {out['hardware']}: {out['rows']:,} synthetic impressions, 1 epoch, "
        f"median of {args.repeats}"
    )
    print(f"  no-text network (baseline): {out['no_text_per_s']:>8,d} impressions/s")
    print(
        f"  BERT-CTR, frozen text:      {out['bert_ctr_frozen_per_s']:>8,d} impressions/s "
        f"({out['ratio']}x baseline)"
    )
    print(
        f"  BERT-CTR, finetune (tiny BERT, {8 * out['finetune_rows']:,} impressions): "
        f"{out['finetune_tiny_per_s']:>8,d} impressions/s"
    )
    print(
        f"  BERT-CTR, finetune (MiniLM, {out['finetune_rows']:,} impressions):    "
        f"{out['finetune_minilm_per_s']:>8,.1f} impressions/s (GPU work on CPU)"
    )
    print(f"  peak RSS {out['peak_rss_gib']} GiB")
    return {"rows": rows(out), "figures": out}


if __name__ == "__main__":
    main()
