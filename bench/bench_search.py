"""Search relevance end to end: held-out queries sent to the live service, scored by the simulator's truth.

For the test split's search requests (the last ``train.test_share`` of the batch by time,
the requests the champion never trained on), the benchmark sends each request's query
and shopper (the shop's own id, as a front end would) to ``/search`` (k=10, no
explanations) of the packaged champion served by uvicorn on a free port, as
bench/bench_serving.py starts it (``--model``, ``$SHOPRANK_MODEL``, the tag in
models/package.json). It scores the returned top 10 with the simulator's true utility
(bench/search_truth.py: the click model's utility terms for that shopper and query,
without the per-item noise):

- **NDCG@10** against the oracle's top 10 over the whole catalogue (gain: the noise-free
  attractiveness; the headline), and against the oracle over the request's retrieved
  candidates (what re-ranking them could reach at best);
- the **share of the top 10 of the requested product type**.

Rankings of each request, all in the same run:

- the **/search page**: what the service shows (the champion's scores, then the page's
  category diversity and exploration slots);
- the **ranker's order**: ``/rank`` of all the retrieved candidates, the champion's plain
  score order (no diversity, no exploration), so the model and the page policy show apart;
- **retrieval alone** (the baseline): the top 10 of the service's candidate list before
  the ranker (BM25 and nearest neighbours fused by reciprocal rank), from the same
  retrieval component the service calls, in-process on the same bundle and query vector
  (the answer of ``/search`` carries only the page, not the candidate order);
- the retrieved candidates **shuffled** (seeded by the request): the floor of a ranking
  that ignores everything.

Figures are printed for every held-out query and for the queries that name a product type.

Encoders: when params.yaml sets ``text.encoder: adapted`` the benchmark runs a second time
with ``text.encoder: stock`` (:func:`encoder_runs`) and prints that run's figures beside
it; without the setting only the configured encoder runs.
Run: ``python -m bench.bench_search [--requests 2000] [--model TAG_OR_DIR] [--params params.yaml]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.bench_serving import private_params, start_server
from bench.hardware import describe
from bench.results import ROOT, printed, row
from bench.search_truth import Request, SearchTruth

RANKINGS = ("search", "ranker", "retrieval", "shuffled")
NAMES = {
    "search": "/search page",
    "ranker": "ranker's order (/rank)",
    "retrieval": "retrieval alone",
    "shuffled": "retrieved, shuffled",
}
GROUPS = {"product-type queries": "product_type", "all held-out queries": None}


def retrieval_order(ranker: Any, query: str) -> list[str]:
    """The service's candidates before the ranker, best first: the first steps of ``Ranker.search``."""
    q_vec, _ = ranker.query_vector(query)
    got = ranker.retriever.retrieve(query, q_vec, ranker.settings.retrieve_n, ranker.catalog.mask(None))
    return [str(i) for i in ranker.catalog.item_ids[got.rows]]


def measure(url: str, ranker: Any, truth: SearchTruth, requests: list[Request]) -> list[dict]:
    """Per request: the scores (bench/search_truth.py) of /search's top 10, of the champion's
    score order of the retrieved candidates (/rank of them all: no diversity, no exploration
    slots), of retrieval's own order and of the retrieved candidates in random order (seeded
    by the request: what a ranking that ignores everything scores)."""
    import httpx

    out = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for n, req in enumerate(requests, 1):
            body = {"query": req.query, "user_id": req.user_id, "k": 10, "explain": False}
            answer = client.post("/search", json=body)
            if answer.status_code != 200:
                raise RuntimeError(f"/search {body}: HTTP {answer.status_code} {answer.text[:300]}")
            served = [r["item_id"] for r in answer.json()["results"]]
            candidates = retrieval_order(ranker, req.query)
            body = {"query": req.query, "user_id": req.user_id, "item_ids": candidates}
            answer = client.post("/rank", json=body)
            if answer.status_code != 200:
                raise RuntimeError(f"/rank of {req.query!r}: HTTP {answer.status_code} {answer.text[:300]}")
            scored = answer.json()["order"]
            shuffled = list(np.random.default_rng(req.index).permutation(candidates))
            got: dict[str, Any] = {"request_id": req.request_id, "level": req.target_level}
            rankings = {"search": served, "ranker": scored, "retrieval": candidates, "shuffled": shuffled}
            for name, ranked in rankings.items():
                got[name] = truth.scores(req, ranked)
                got[name]["ndcg@10 over candidates"] = truth.scores(req, ranked, candidates)["ndcg@10"]
            out.append(got)
            if n % 250 == 0:
                print(f"  {n}/{len(requests)} requests", flush=True)
    return out


def summary(per_request: list[dict]) -> dict:
    """Mean of each score, per ranking, for each group of requests."""
    out: dict[str, dict] = {}
    for group, level in GROUPS.items():
        chosen = [r for r in per_request if level is None or r["level"] == level]
        out[group] = {"requests": len(chosen)}
        for name in RANKINGS:
            keys = chosen[0][name] if chosen else {}
            out[group][name] = {k: float(np.mean([r[name][k] for r in chosen])) for k in keys}
    return out


def in_process_ranker(bundle: Path, params_file: Path) -> Any:
    import torch

    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    torch.set_num_threads(1)
    params = load_params(params_file)
    return Ranker(bundle, params, params.serve.model_copy(update={"feature_ttl_s": 0.0}))


def run_once(bundle: Path, params_file: Path, truth: SearchTruth, requests: list[Request], tmp: Path) -> dict:
    """One service and one in-process retrieval on ``params_file``: the summary of every request."""
    proc, url = start_server(bundle, params_file, 1, tmp / "server.log")
    ranker = None
    try:
        ranker = in_process_ranker(bundle, params_file)
        print(f"service: {url}, model {bundle.name}; {len(requests)} requests", flush=True)
        return summary(measure(url, ranker, truth, requests))
    finally:
        if ranker is not None:
            ranker.stop_refresh()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def encoder_runs(raw: dict) -> dict[str, dict | None]:
    """The runs to make: label -> params override (None: params.yaml as it is).

    The hook of the encoder comparison: ``text.encoder: adapted`` adds a run on the stock
    encoder; otherwise the one configured encoder runs, unlabelled.
    """
    if raw.get("text", {}).get("encoder") == "adapted":
        return {"adapted encoder": None, "stock encoder": {"encoder": "stock"}}
    return {"": None}


def held_out(params: Any, truth: SearchTruth, n: int, seed: int) -> list[Request]:
    """Up to ``n`` of the test split's search requests, drawn evenly at random (seeded)."""
    from shoprank.training.data import read_split
    from shoprank.training.train import training_set_path

    split, keys = read_split(training_set_path(params), params.train.val_share, params.train.test_share)
    ids = keys["request_id"].iloc[split["test"]].astype(str).unique()
    requests = truth.search_requests(ids)
    if n and len(requests) > n:
        pick = np.sort(np.random.default_rng(seed).choice(len(requests), size=n, replace=False))
        requests = [requests[i] for i in pick]
    return requests


METRICS = {
    "ndcg@10": ("NDCG@10 (true utility, catalogue oracle)", ""),
    "type@10": ("share of the requested product type", "share"),
    "ndcg@10 over candidates": ("NDCG@10 (oracle over the retrieved candidates)", ""),
}


def rows(results: dict[str, dict]) -> list[dict]:
    """Per encoder run, group and metric: the /search page and the ranker's order, each
    against retrieval alone (the first row, /search's NDCG@10 on product-type queries, heads)."""
    out = []
    for label, figures in results.items():
        prefix = f"{label}, " if label else ""
        for group in GROUPS:
            g = figures[group]
            for key, (what, unit) in METRICS.items():
                for name in ("search", "ranker", "shuffled"):
                    out.append(
                        row(
                            f"{prefix}{NAMES[name]}, {group}: {what}",
                            g[name][key],
                            unit,
                            NAMES["retrieval"],
                            g["retrieval"][key],
                        )
                    )
    return out


def report(results: dict[str, dict]) -> None:
    print(f"\n{'requests':44s} {'ranking':24s} {'NDCG@10':>8s} {'NDCG@10 cand.':>13s} {'type share':>10s}")
    for label, figures in results.items():
        for group in GROUPS:
            g = figures[group]
            what = f"{label + ': ' if label else ''}{group} ({g['requests']})"
            for name in RANKINGS:
                m = g[name]
                print(
                    f"{what:44s} {NAMES[name]:24s} {m['ndcg@10']:8.4f} {m['ndcg@10 over candidates']:13.4f} "
                    f"{m['type@10']:10.3f}"
                )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="held-out search requests (0: all)")
    ap.add_argument("--model", default=os.environ.get("SHOPRANK_MODEL"), help="bundle folder or BentoML tag")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--seed", type=int, default=0, help="which held-out requests are drawn")
    args = ap.parse_args(argv)
    print(f"hardware: {describe()}", flush=True)
    from shoprank.config import load_params
    from shoprank.ranking.loader import load_bundle_path

    t0 = time.perf_counter()
    record = args.params.parent / "models" / "package.json"  # what the pipeline packaged
    if args.model is None and record.is_file():
        args.model = json.loads(record.read_text())["tag"]
    params = load_params(args.params)
    try:
        bundle = load_bundle_path(args.model)
        truth = SearchTruth(params)
    except Exception as exc:  # no packaged champion, no truth, or truth of another simulation
        why = f"{exc}; run the pipeline (`dvc repro`, or `dvc checkout` of its committed outputs)"
        print(f"skipped: {why}")
        return {"skipped": why}
    requests = held_out(params, truth, args.requests, args.seed)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        raw, params_file = private_params(args.params, Path(tmp))
        for label, text in encoder_runs(raw).items():
            variant = params_file
            if text is not None:
                raw_variant = {**raw, "text": {**raw["text"], **text}}
                variant = Path(tmp) / f"params-{label.split()[0]}.yaml"
                variant.write_text(yaml.safe_dump(raw_variant))
            results[label] = run_once(bundle, variant, truth, requests, Path(tmp))
    report(results)
    seconds = round(time.perf_counter() - t0, 1)
    print(f"({seconds:.0f} s)")
    figures: dict[str, Any] = {"hardware": describe(), "profile": params.simulate.profile}
    figures["model"] = bundle.name
    figures.update(requests=len(requests), seconds=seconds, runs=results)
    return printed(rows(results), figures)


if __name__ == "__main__":
    main()
