"""Train a tiny BERT-CTR (frozen mode) on a synthetic frame with a known click model; print its quality.

Run by tests/test_ddp.py as a script in a subprocess, because Lightning's ``ddp``
strategy starts the other ranks by re-running ``sys.argv`` (which is this script, not
pytest). Every rank runs the whole script; only rank 0 writes the JSON report:

    python tests/ddp_train.py --devices 2 --strategy ddp --out ddp.json
    python tests/ddp_train.py --devices 1 --strategy auto --out single.json

The training call is the pipeline's own (``train_candidate``); only the data is synthetic.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ITEMS, CLUSTERS, DIM, PAGE = 600, 12, 32, 20


def synthetic(rows: int, seed: int = 0):
    """A Frame whose clicks depend on the query-item text match, a quality signal and the position.

    Returns (frame, item ids, item embedding table, the true click probability of each row).
    """
    from shoprank.inputs.frame import Frame

    rng = np.random.default_rng(seed)
    ids = [f"item_{i:05d}" for i in range(ITEMS)]
    centres = rng.normal(size=(CLUSTERS, DIM))
    item_cluster = rng.integers(CLUSTERS, size=ITEMS)
    table = (centres[item_cluster] + 0.5 * rng.normal(size=(ITEMS, DIM))).astype(np.float32)
    quality = rng.normal(size=ITEMS)
    requests = rows // PAGE
    req_cluster = rng.integers(CLUSTERS, size=requests)
    # a third of each page comes from the query's cluster, the rest at random
    same = rng.random((requests, PAGE)) < 0.35
    in_cluster = [np.flatnonzero(item_cluster == c) for c in range(CLUSTERS)]
    item = np.where(
        same,
        np.stack([rng.choice(in_cluster[c], size=PAGE) for c in req_cluster]),
        rng.integers(ITEMS, size=(requests, PAGE)),
    ).ravel()
    rows = requests * PAGE
    position = np.tile(np.arange(1, PAGE + 1), requests)
    match = (item_cluster[item] == np.repeat(req_cluster, PAGE)).astype(float)
    logit = -2.4 + 2.2 * match + 0.9 * quality[item] - 0.6 * np.log(position)
    p_click = 1 / (1 + np.exp(-logit))
    query_vec = (centres[req_cluster] + 0.5 * rng.normal(size=(requests, DIM))).astype(np.float32)
    df = pd.DataFrame(
        {
            "request_id": np.repeat(np.arange(requests), PAGE).astype(str),
            "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(np.arange(rows), unit="s"),
            "item_id": np.asarray(ids, dtype=object)[item],
            "query": "a query",
            "position": position,
            "clicked": (rng.random(rows) < p_click).astype(np.int8),
            "category": item_cluster[item].astype(str),
            "brand": rng.integers(8, size=rows).astype(str),
            "log_price": rng.normal(4, 1, rows),
            # a noisy view of the item's quality, as a smoothed CTR feature would give
            "item_ctr_7d": 1 / (1 + np.exp(-(quality[item] + 0.3 * rng.normal(size=rows)))),
            "recent_items": [[] for _ in range(rows)],
        }
    )
    vectors = {"item_embedding": table[item], "query_embedding": np.repeat(query_vec, PAGE, axis=0)}
    return Frame(df, vectors), ids, table, p_click


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--strategy", default="auto")
    ap.add_argument("--rows", type=int, default=24_000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)  # one core per rank: the ranks must not fight over the cores

    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from sklearn.metrics import log_loss, roc_auc_score

    from shoprank.config import Train
    from shoprank.models.scorers import load
    from shoprank.training.train import train_candidate

    frame, ids, table, p_true = synthetic(args.rows)
    cut = int(len(frame) * 0.8) // PAGE * PAGE  # by time (row order), whole requests
    train, val = frame.take(np.arange(cut)), frame.take(np.arange(cut, len(frame)))
    settings = Train(
        d=16,
        cross_layers=1,
        mlp=(32,),
        dropout=0.0,
        batch_size=256,
        max_epochs=4,
        patience=4,
        lr=5e-3,
        warmup_steps=10,
        accelerator="cpu",
        devices=args.devices,
        strategy=args.strategy,
        precision="32-true",
        seed=0,
    )
    out_dir = args.out.parent / f"{args.out.stem}_models"
    start = time.perf_counter()
    result = train_candidate("bert_ctr", train, val, ids, table, settings, 20, out_dir)
    seconds = time.perf_counter() - start
    if getattr(rank_zero_only, "rank", 0) != 0:  # the other ranks trained the same replica; rank 0 reports
        return
    _, scorer = load(result.artifact)
    y = val.df["clicked"].to_numpy()
    p = scorer.predict(val, with_position=True)
    report = {
        "devices": args.devices,
        "strategy": args.strategy,
        "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
        "epochs": result.epochs,
        "seconds": round(seconds, 2),
        "best_val_loss": result.best_val_loss,
        "auc": float(roc_auc_score(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6))),
        "oracle_auc": float(roc_auc_score(y, p_true[cut:])),
        "oracle_log_loss": float(log_loss(y, p_true[cut:])),
        "base_rate_log_loss": float(log_loss(y, np.full(len(y), y.mean()))),
        "artifacts": sorted(p.name for p in out_dir.iterdir()),
    }
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
