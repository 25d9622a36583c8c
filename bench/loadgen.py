"""A closed-loop HTTP load generator: keep-alive clients, latency percentiles split by query source."""

from __future__ import annotations

import http.client as http_client
import json
import threading
import time
from typing import Any

import numpy as np

SOURCES = ("cache", "store", "encoder")


def _percentiles(lat: np.ndarray) -> tuple[float, float]:
    if not len(lat):
        return float("nan"), float("nan")
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


PREPARED_RPS = 250  # request bodies prepared per second of load, over all clients


def load(url: str, path: str, make_body, clients: int, seconds: float, seed: int = 0) -> dict:
    """Closed-loop load: ``clients`` threads, each with a keep-alive connection, for ``seconds``.

    ``make_body(rng)`` gives ``(body, unseen)``: ``unseen`` when the query is not in the logs.
    ``seed``: one per scenario, so a scenario does not replay an earlier one's queries (which
    the workers have cached by then).
    """
    from urllib.parse import urlsplit

    latencies: list[list[float]] = [[] for _ in range(clients)]
    sources: list[list[str]] = [[] for _ in range(clients)]  # where the worker got the query vector
    unseen: list[list[bool]] = [[] for _ in range(clients)]
    errors = [0] * clients
    clock: dict[str, float] = {}

    def started() -> None:  # once every client is ready: the load (and its CPU count) starts now
        clock["wall"], clock["cpu"] = time.perf_counter(), time.process_time()
        clock["stop"] = clock["wall"] + seconds

    start_gate = threading.Barrier(clients, action=started)
    host = urlsplit(url)
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    def client(i: int) -> None:
        # the standard library's HTTP client: much less CPU per request than httpx, which
        # matters when the load generator shares the service's cores
        rng = np.random.default_rng((seed, i))
        http = http_client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=30)

        def post(body: bytes) -> tuple[int, bytes]:
            http.request("POST", path, body, headers)
            response = http.getresponse()
            return response.status, response.read()

        def encoded() -> tuple[bytes, bool]:
            body, new = make_body(rng)
            return json.dumps(body).encode(), new

        # bodies made before the clock starts (more than a client sends: made on the fly after)
        ready = [encoded() for _ in range(int(seconds * PREPARED_RPS / clients) + 20)]
        ready.reverse()
        try:
            post(encoded()[0])  # warm the connection
            start_gate.wait()
            stop = clock["stop"]
            while time.perf_counter() < stop:
                body, new = ready.pop() if ready else encoded()
                t0 = time.perf_counter()
                status, data = post(body)
                dt = time.perf_counter() - t0
                if status == 200:
                    latencies[i].append(dt)
                    sources[i].append(str(json.loads(data).get("query_vector")))
                    unseen[i].append(new)
                else:
                    errors[i] += 1
        finally:
            http.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, client_cpu = time.perf_counter() - clock["wall"], time.process_time() - clock["cpu"]
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1000
    source = np.concatenate([np.asarray(x, dtype=object) for x in sources]).astype(str)
    new = np.concatenate([np.asarray(x, bool) for x in unseen])
    p50, p99 = _percentiles(lat)
    out: dict[str, Any] = {
        "requests": len(lat),
        "errors": sum(errors),
        "p50_ms": p50,
        "p99_ms": p99,
        "rps": len(lat) / min(wall, seconds) if len(lat) else 0.0,
        "unseen_share": float(new.mean()) if len(lat) else float("nan"),
        # the load generator shares the cores with the service: its CPU per request
        "client_cpu_ms": 1000 * client_cpu / max(len(lat) + sum(errors), 1),
        "by_source": {},
    }
    out["logged_p50_ms"], out["logged_p99_ms"] = _percentiles(lat[~new])
    out["unseen_p50_ms"], out["unseen_p99_ms"] = _percentiles(lat[new])
    for name in SOURCES:  # cache: seen by this worker; store: logged, new to the worker; encoder: BERT
        sel = source == name
        share = float(sel.mean()) if len(lat) else float("nan")
        out["by_source"][name] = (share, *_percentiles(lat[sel]))
    out["logged_encoded"] = int(((source == "encoder") & ~new).sum())  # logged yet encoded: store missed
    return out


def describe_load(name: str, clients: int, r: dict) -> str:
    split = ", ".join(
        f"{src} {share:.1%} (p50 {p50:.1f} / p99 {p99:.1f})"
        for src, (share, p50, p99) in r["by_source"].items()
        if share > 0
    )
    return (
        f"{name:8s} {clients} client(s): p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
        f"{r['rps']:7.1f} req/s  ({r['requests']} ok, {r['errors']} errors; {r['unseen_share']:.1%} unseen "
        f"queries)\n    query vector from: {split}\n"
        f"    logged queries p50 {r['logged_p50_ms']:.2f} / p99 {r['logged_p99_ms']:.2f} ms; "
        f"unseen p50 {r['unseen_p50_ms']:.2f} / p99 {r['unseen_p99_ms']:.2f} ms"
        + (f"; {r['logged_encoded']} logged queries were encoded" if r["logged_encoded"] else "")
        + f"\n    load generator: {r['client_cpu_ms']:.2f} ms CPU per request (on the same cores)"
    )
