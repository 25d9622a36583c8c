"""Timing and memory helpers the benchmarks share: latency percentiles, peak RSS, a throwaway Redis."""

from __future__ import annotations

import resource
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager

import numpy as np


def peak_rss_gib() -> float:
    """Peak resident memory of this process since start or the last :func:`reset_peak` (GiB)."""
    try:
        with open("/proc/self/status") as fh:  # VmHWM: resettable, unlike ru_maxrss
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def reset_peak() -> bool:
    """Start a new peak-RSS measurement (Linux); False where the process-lifetime peak is all there is."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@contextmanager
def redis_server():
    """A throwaway redis-server on a free 127.0.0.1 port, or None when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def latency(read, repeats: int) -> dict:
    """p50/p99 (ms) of ``read()`` over ``repeats`` calls, after one warm-up call, and the p50 of its CPU time.

    The CPU time (this thread's) is the work of the call itself: unlike the wall-clock
    figures it hardly grows when other processes share the cores.
    """
    read()  # warm-up: registry, connection, statement cache
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        read()
        cpu.append(time.thread_time() - start_cpu)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    cpu_p50 = float(np.median(cpu)) * 1000
    return {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 3), "cpu_p50_ms": round(cpu_p50, 3)}


def median_latency(read, repeats: int, rounds: int) -> dict:
    """The median over ``rounds`` of :func:`latency` (each round's p50 and p99), plus every round."""
    runs = [latency(read, repeats) for _ in range(rounds)]
    return {
        **{k: round(float(np.median([r[k] for r in runs])), 3) for k in ("p50_ms", "p99_ms", "cpu_p50_ms")},
        "rounds": runs,
    }


def reference_work(seconds: float):
    """A fixed pure-Python workload (sorting a shuffled list) sized to take about ``seconds``.

    The machine-noise reference: timed the same way right after the reader, its p99/p50
    shows how much of the reader's tail the shared cores add to any CPU-bound call of
    that length. Sized once by its own median (not per round), so it is the same work
    in every round.
    """
    rng = np.random.default_rng(0)
    n = 1000
    while True:
        data = rng.random(n).tolist()
        calls = []
        for _ in range(7):
            start = time.perf_counter()
            sorted(data)
            calls.append(time.perf_counter() - start)
        took = float(np.median(calls))
        if took >= seconds or n > 10_000_000:
            return lambda data=data: sorted(data)
        n = int(n * min(max(seconds / max(took, 1e-7), 1.1), 4.0))
