"""Over a thousand hostile requests (bench/fuzz.py) on the live service: not one 5xx or
dropped connection, every request answered with a 2xx or a 4xx."""

from __future__ import annotations

import pytest
from bench.fuzz import fuzz


@pytest.mark.slow
@pytest.mark.integration
def test_a_thousand_hostile_requests_get_no_server_error(live_server):
    counts = fuzz(live_server.url, n=1200, seed=0)
    print("status counts:", dict(sorted(counts.items())))
    assert sum(counts.values()) == 1200
    assert not {code: n for code, n in counts.items() if code >= 500 or code == 0}, counts
    assert {400, 404, 405, 413, 422} <= set(counts)  # the attack families reached each refusal
    assert live_server.get("/health").status_code == 200
