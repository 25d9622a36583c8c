"""Serving latency and throughput: `rank` of 100 candidates and `search`, 1 and 8 concurrent clients.

Starts the service (uvicorn, two workers, the packaged champion: ``--model``,
``$SHOPRANK_MODEL``, the tag in models/package.json, else ``shoprank-ranker:latest``) on a
free port with the feedback log in a temporary folder, then drives it with a threaded HTTP
load generator (keep-alive ``http.client`` connections, closed loop: each client sends its next request when
the last one answers) for ``--seconds`` per scenario. Prints p50 / p99 latency and
requests per second.

Queries: a request carries a logged query (one the online store has an embedding for:
the ``query_text`` feature table, drawn in proportion to the requests that had it in the
logs) or, with probability ``--unseen-share`` (default 5%), a query the logs never had
(three random title words, a new text each time: it always pays for one BERT pass). The
headline p50/p99 is over that mix; each response names where its query vector came from
(``query_vector``: the worker's cache, the online store, or the encoder) and the latency
is also split by that source and by logged/unseen. Baseline, same run, in-process: the
naive ranker that embeds the query and every candidate with a full BERT pass per
request, then scores (what the cached item embeddings and the online store avoid); the
rank figures are reported against it.
Run: `python -m bench.bench_serving [--seconds 10] [--unseen-share 0.05] [--model TAG_OR_DIR] [--workers 2]`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bench.hardware import describe
from bench.loadgen import describe_load, load
from bench.results import row

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, params_file: Path, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {**os.environ, "SHOPRANK_PARAMS": str(params_file), "SHOPRANK_MODEL": str(bundle)}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "shoprank.ranking.http:app_from_env"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    with open(log, "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:  # fresh connections land on any worker: every worker must say ready
            if all(httpx.get(url + "/ready", timeout=2).status_code == 200 for _ in range(8 * workers)):
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("server not ready after 300 s")


def private_params(params: Path, tmp: Path) -> tuple[dict, Path]:
    """``params`` as ``tmp``/params.yaml with absolute paths and the feedback log in ``tmp``
    (never the project's log): what the benchmark's service reads."""
    raw = yaml.safe_load(params.read_text())
    raw.setdefault("paths", {})["feedback"] = str(tmp / "feedback")
    for key in ("features", "models", "metrics", "raw", "truth", "validated", "training", "secrets"):
        if key in raw["paths"]:
            raw["paths"][key] = str((params.parent / raw["paths"][key]).resolve())
    raw["features"]["repo"] = str((params.parent / raw["features"]["repo"]).resolve())
    params_file = tmp / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    return raw, params_file


def logged_queries(raw: dict) -> tuple[list[str], np.ndarray]:
    """The logged queries (normalised texts of the ``query_text`` table) and their request shares."""
    features = Path(raw["paths"]["features"])
    table = pd.read_parquet(features / "query_text.parquet", columns=["query_text", "query_id"])
    texts = table["query_text"].astype(str).tolist()
    weights = np.ones(len(texts))
    impressions = Path(raw["paths"].get("raw", "")) / "impressions.parquet"
    if impressions.is_file():  # in proportion to the requests that carried the query
        from shoprank.features.queries import query_ids

        imp = pd.read_parquet(impressions, columns=["request_id", "query"]).drop_duplicates("request_id")
        counts = query_ids(imp["query"].fillna("")).value_counts()
        weights = table["query_id"].map(counts).fillna(0).to_numpy(float)
        if weights.sum() <= 0:
            weights = np.ones(len(texts))
    return texts, weights / weights.sum()


def naive_baseline(bundle: Path, params_file: Path, requests: list[dict], texts: dict[str, str]) -> dict:
    """In-process: a full BERT pass over the query and each of the 100 candidates, then the champion."""
    import torch

    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    torch.set_num_threads(1)
    params = load_params(params_file)
    ranker = Ranker(bundle, params, params.serve.model_copy(update={"feature_ttl_s": 0.0}))
    lat = []
    for body in requests:
        t0 = time.perf_counter()
        ranker.encoder.encode([body["query"]])
        item_vecs = ranker.encoder.encode([texts[i] for i in body["item_ids"]])  # no cache: every candidate
        rows = ranker.rows_of(body["item_ids"])
        saved = ranker.vectors
        ranker.vectors = saved.copy()
        ranker.vectors[rows] = item_vecs
        ranker.fast = None  # and the pandas path, as evaluation scores
        ranker.score(rows, body["query"], body["user_id"], "r_" + "0" * 32, {})
        ranker.vectors = saved
        lat.append(time.perf_counter() - t0)
    lat_ms = np.asarray(lat) * 1000
    return {
        "requests": len(lat),
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "rps": len(lat) / float(np.sum(lat)),
    }


def rows(results: dict, base: dict) -> list[dict]:
    """rank against the naive ranker (same candidates, same run), then the splits and search."""
    one, eight = results["rank100_1"], results["rank100_8"]
    naive = "naive ranker (BERT pass per candidate)"
    out = [
        row("rank, 100 candidates, 1 client, p99", one["p99_ms"], "ms", f"{naive}, p99", base["p99_ms"]),
        row("rank, 100 candidates, 1 client, p50", one["p50_ms"], "ms", f"{naive}, p50", base["p50_ms"]),
        row("rank, 100 candidates, 8 clients", eight["rps"], "req/s", f"{naive}, 1 client", base["rps"]),
        row("rank, 1 client, logged queries, p99", one["logged_p99_ms"], "ms"),
        row("rank, 1 client, unseen queries (one BERT pass), p50", one["unseen_p50_ms"], "ms"),
        row("rank, 8 clients, p50", eight["p50_ms"], "ms"),
    ]
    for clients in (1, 8):
        r = results[f"search_{clients}"]
        out.append(row(f"search, k=10, {clients} client(s), p50", r["p50_ms"], "ms"))
        out.append(row(f"search, k=10, {clients} client(s), p99", r["p99_ms"], "ms"))
        out.append(row(f"search, k=10, {clients} client(s)", r["rps"], "req/s"))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="load per scenario")
    ap.add_argument("--model", default=os.environ.get("SHOPRANK_MODEL"), help="bundle folder or BentoML tag")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (one per core)")
    ap.add_argument("--baseline-requests", type=int, default=8)
    ap.add_argument(
        "--unseen-share",
        type=float,
        default=0.05,
        help="share of requests whose query the logs never had (a new text each time: one BERT pass)",
    )
    args = ap.parse_args(argv)
    print(f"hardware: {describe()}", flush=True)
    from shoprank.ranking.loader import load_bundle_path

    record = ROOT / "models" / "package.json"  # what the pipeline packaged, not whatever came last
    if args.model is None and record.is_file():
        args.model = json.loads(record.read_text())["tag"]
    try:
        bundle = load_bundle_path(args.model)
    except Exception as exc:
        why = f"no packaged champion ({exc}); run the pipeline, then `shoprank package`"
        print(f"skipped: {why}")
        return {"skipped": why}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        raw, params_file = private_params(args.params, Path(tmp))
        items = pd.read_parquet(bundle / "items.parquet")
        users = pd.read_parquet(bundle / "users.parquet")["user_id"].astype(str).tolist()[:200] or [None]
        item_ids = items["item_id"].astype(str).to_numpy()
        from shoprank.features.queries import normalise_query

        logged, weights = logged_queries(raw)
        known = set(logged)
        words = np.array(sorted({w for t in items["title"].astype(str) for w in t.lower().split()}))
        print(
            f"queries: {len(logged)} logged (drawn by their share of logged requests), "
            f"{args.unseen_share:.0%} of requests unseen (three random title words each)",
            flush=True,
        )

        def query(rng) -> tuple[str, bool]:
            if rng.random() >= args.unseen_share:
                return str(logged[rng.choice(len(logged), p=weights)]), False
            while True:  # a new text (almost surely): the logs, the store and the worker lack it
                text = " ".join(rng.choice(words, size=3))
                if normalise_query(text) not in known:
                    return text, True

        def rank_body(rng) -> tuple[dict, bool]:
            cand = rng.choice(item_ids, size=min(100, len(item_ids)), replace=False).tolist()
            q, new = query(rng)
            return {"query": q, "user_id": str(rng.choice(users)), "item_ids": cand}, new

        def search_body(rng) -> tuple[dict, bool]:
            q, new = query(rng)
            return {"query": q, "user_id": str(rng.choice(users)), "k": 10}, new

        proc, url = start_server(bundle, params_file, args.workers, Path(tmp) / "server.log")
        print(
            f"service: {url}, model {bundle.name}, {args.workers} worker(s), {args.seconds:g} s per scenario"
        )
        results = {}
        try:
            scenarios = [
                (name, path, body, clients)
                for name, path, body in (("rank100", "/rank", rank_body), ("search", "/search", search_body))
                for clients in (1, 8)
            ]
            for seed, (name, path, body, clients) in enumerate(scenarios):
                r = load(url, path, body, clients, args.seconds, seed)
                results[f"{name}_{clients}"] = r
                print(describe_load(name, clients, r), flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        text = items["title"].astype(str) + ". " + items["description"].astype(str)
        texts = dict(zip(item_ids, text, strict=True))
        rng = np.random.default_rng(99)
        base = naive_baseline(
            bundle, params_file, [rank_body(rng)[0] for _ in range(args.baseline_requests)], texts
        )
        print(
            "baseline: naive rank100 (BERT pass per candidate), 1 client, in-process: "
            f"p50 {base['p50_ms']:.1f} ms  p99 {base['p99_ms']:.1f} ms  {base['rps']:.1f} req/s"
        )
        one, eight = results["rank100_1"], results["rank100_8"]
        print(
            f"rank100 against the naive ranker, 1 client ({one['unseen_share']:.1%} unseen queries): "
            f"p50 {one['p50_ms']:.1f} ms ({base['p50_ms'] / one['p50_ms']:.0f}x lower), "
            f"p99 {one['p99_ms']:.1f} ms; logged queries only: p99 {one['logged_p99_ms']:.1f} ms; "
            f"8 clients: {eight['rps']:.0f} req/s"
        )
    figures = {"hardware": describe(), "workers": args.workers, "seconds": args.seconds}
    figures.update(unseen_share=args.unseen_share, scenarios=results, naive=base)
    return {"rows": rows(results, base), "figures": figures}


if __name__ == "__main__":
    main()
