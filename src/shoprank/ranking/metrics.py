"""Prometheus metrics of the service (process-wide, on prometheus_client's default registry)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, values

# prometheus_client picks its storage when first imported: shared files when
# PROMETHEUS_MULTIPROC_DIR was set then (BentoML workers), process memory otherwise. Feast
# sets that variable when imported, later, so the choice is read here, not from the env.
MULTIPROCESS = values.ValueClass is not values.MutexValue

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)

REQUEST_SECONDS = Histogram(
    "shoprank_request_seconds", "Request latency by endpoint.", ["endpoint"], buckets=LATENCY_BUCKETS
)
REQUESTS = Counter("shoprank_requests_total", "Requests by endpoint and HTTP status.", ["endpoint", "status"])
STAGE_SECONDS = Histogram(
    "shoprank_stage_seconds",
    "Time in each stage of a search, recommend or rank request.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
SCORES = Histogram(
    "shoprank_score",
    "Predicted CTR of every returned result.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
)
EMPTY_RESULTS = Counter("shoprank_empty_results_total", "Searches that returned no result.", ["endpoint"])
FALLBACKS = Counter(
    "shoprank_fallback_total", "Responses served (partly) from fallbacks, by reason.", ["endpoint", "reason"]
)
QUERY_VECTORS = Counter(
    "shoprank_query_vectors_total",
    "Query vectors by endpoint and source: cache (this process), store (the online store), encoder (BERT).",
    ["endpoint", "source"],
)
FEED_SOURCES = Counter(
    "shoprank_recommend_sources_total",
    "Recommended results by the retriever that found them (a result found by two counts in both).",
    ["source"],
)
FEEDBACK = Counter("shoprank_feedback_events_total", "Feedback events written to the log.", ["event"])
EXPERIMENT_REQUESTS = Counter(
    "shoprank_experiment_requests_total",
    "Responses of an online experiment, by arm (interleaved: both arms on one page).",
    ["experiment", "arm"],
)
EXPERIMENT_FEEDBACK = Counter(
    "shoprank_experiment_feedback_total",
    "Clicks and purchases on an experiment's items, by the arm that placed the item "
    "(counted by the worker that served it).",
    ["experiment", "arm", "event"],
)
MODEL_INFO = Gauge(
    "shoprank_model_info", "The champion in service (value 1).", ["version", "candidate", "kind"]
)


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time a stage of a request: into ``timings`` (milliseconds, the response shows them) and
    into :data:`STAGE_SECONDS`."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        timings[name] = round(dt * 1000, 3)
        STAGE_SECONDS.labels(name).observe(dt)
