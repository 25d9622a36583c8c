"""Search relevance end to end on the tiny profile: the live /search scored by the simulator's truth.

The session's packaged tiny champion and its uvicorn server (tests/conftest.py) answer the
held-out search requests; bench/search_truth.py scores the answers with the click model's
noise-free utility, as `python -m bench.bench_search` does on the default profile.
"""

from __future__ import annotations

import numpy as np
import pytest
from bench.bench_search import encoder_runs, held_out, in_process_ranker, measure, rows, summary
from bench.search_truth import SearchTruth

from shoprank.config import load_params


def test_rows_put_each_ranking_beside_retrieval_alone_and_the_page_first():
    """Placeholder scores, not figures: the shape ``measure`` returns, through ``summary`` and ``rows``."""

    def scored(ndcg: float) -> dict:
        return {"ndcg@10": ndcg, "type@10": ndcg / 2, "ndcg@10 over candidates": ndcg}

    per = [
        {
            "level": level,
            "search": scored(0.6),
            "ranker": scored(0.8),
            "retrieval": scored(0.4),
            "shuffled": scored(0.1),
        }
        for level in ("product_type", "product_type", "category")
    ]
    got = summary(per)
    assert got["product-type queries"]["requests"] == 2 and got["all held-out queries"]["requests"] == 3
    out = rows({"": got})
    assert out[0]["measure"] == "/search page, product-type queries: NDCG@10 (true utility, catalogue oracle)"
    assert out[0]["ratio"] == 1.5 and out[0]["baseline"]["measure"] == "retrieval alone"
    assert {r["baseline"]["measure"] for r in out} == {"retrieval alone"}


def test_a_stock_encoder_run_is_added_only_when_the_adapted_encoder_is_configured():
    assert encoder_runs({"text": {"max_length": 64}}) == {"": None}
    runs = encoder_runs({"text": {"encoder": "adapted"}})
    assert runs == {"adapted encoder": None, "stock encoder": {"encoder": "stock"}}


@pytest.fixture(scope="module")
def tiny_truth(serving_env) -> SearchTruth:
    return SearchTruth(load_params(serving_env.params_file))


@pytest.mark.slow
def test_truth_scores_the_oracle_order_one_and_its_reverse_lower(serving_env, tiny_truth):
    """The metric itself: the oracle's own order scores 1, the catalogue's worst items score less."""
    params = load_params(serving_env.params_file)
    request = held_out(params, tiny_truth, 1, 0)[0]
    everything = np.arange(len(tiny_truth.items))
    gain = tiny_truth.attractiveness(request, everything)
    ids = [str(i) for i in np.array(list(tiny_truth.row_of))[np.argsort(-gain, kind="stable")]]
    assert tiny_truth.scores(request, ids)["ndcg@10"] == pytest.approx(1.0)
    worst = tiny_truth.scores(request, ids[::-1])
    assert worst["ndcg@10"] < 0.9
    pool = ids[5:40]  # over these candidates their own best order is the oracle
    assert tiny_truth.scores(request, pool, pool)["ndcg@10"] == pytest.approx(1.0)
    assert tiny_truth.scores(request, pool)["ndcg@10"] < 1.0


@pytest.fixture(scope="module")
def tiny_search(serving_env, live_server, tiny_truth) -> list[dict]:
    """Every held-out product-type query of the tiny batch, sent to the live service and scored."""
    params = load_params(serving_env.params_file)
    requests = [r for r in held_out(params, tiny_truth, 0, 0) if r.target_level == "product_type"]
    assert len(requests) >= 100, f"{len(requests)} held-out product-type queries: too few to compare"
    ranker = in_process_ranker(serving_env.bundle, serving_env.params_file)
    try:
        return measure(live_server.url, ranker, tiny_truth, requests)
    finally:
        ranker.stop_refresh()


def paired(per_request: list[dict], better: str, worse: str, key: str = "ndcg@10") -> tuple[float, float]:
    """Mean over requests of ``better``'s score minus ``worse``'s, and its standard error."""
    diff = np.array([r[better][key] - r[worse][key] for r in per_request])
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("ranking", ["search", "ranker"])
def test_ranking_beats_the_retrieved_candidates_in_random_order(tiny_search, ranking):
    """The live page and the champion's order carry what the query and shopper ask for: both
    beat a shuffle of the same candidates by more than twice the paired standard error."""
    mean, se = paired(tiny_search, ranking, "shuffled")
    assert mean > 2 * se, (mean, se, summary(tiny_search)["product-type queries"])


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.xfail(
    strict=True,
    reason="the tiny champion (two epochs on a thousand requests) ranks the retrieved candidates "
    "below retrieval's own order on true utility; see docs/models.md, Search relevance",
)
def test_ranked_search_beats_retrieval_alone_on_queries_naming_a_product_type(tiny_search):
    mean, se = paired(tiny_search, "search", "retrieval")
    assert mean > 2 * se, (mean, se, summary(tiny_search)["product-type queries"])
