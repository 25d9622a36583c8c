"""The BentoML service itself on the tiny champion: `bentoml serve` with a key, and `bentoml build`;
feedback verified by whichever process answers (BentoML's workers, or separate replicas)."""

from __future__ import annotations

import subprocess
import time

import pytest

from shoprank.feedback import FeedbackLog
from tests.conftest import ROOT
from tests.serving_fixtures import VENV_BIN, Server


def _logged(feedback_dir, request_ids: set[str], event: str, wait_s: float = 10.0) -> set[str]:
    """The requests among ``request_ids`` whose ``event`` reached the shared log (written in batches)."""
    deadline = time.monotonic() + wait_s
    while True:
        log = FeedbackLog(feedback_dir).read()
        got = set(log.loc[log["event"] == event, "request_id"]) & request_ids
        if got == request_ids or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.integration
def test_bentoml_serve_and_build(serving_env):
    """The BentoML service itself: `bentoml serve` on the packaged model, and `bentoml build`."""
    env = serving_env.env(SHOPRANK_MODEL=serving_env.tag, SHOPRANK_API_KEY="s3cret")
    server = Server(env, ROOT, bentoml=True, log_dir=serving_env.root).start()
    key = {"X-API-Key": "s3cret"}
    try:
        assert server.get("/readyz").status_code == 200  # probes need no key
        r = server.post("/search", {"query": "tent", "k": 3}, headers=key)
        assert r.status_code == 200 and len(r.json()["results"]) == 3
        assert server.post("/search", {"query": ""}, headers=key).status_code == 422
        for path in ("/metrics", "/service-metrics", "/openapi.json", "/docs.json"):  # BentoML's own too
            assert server.get(path).status_code == 401, path
        assert "shoprank_request_seconds" in server.get("/metrics", headers=key).text
        assert server.get("/ui").status_code == 200
        assert server.get("/openapi.json", headers=key).json()["paths"]["/search"]["post"]
        # the workers answer in turn: every click is verified, whichever worker showed its page
        clicked = set()
        for i in range(12):
            page = server.post("/search", {"query": f"tent {i}", "k": 3}, headers=key).json()
            top = page["results"][0]
            click = {"request_id": page["request_id"], "item_id": top["item_id"], "event": "click"}
            r = server.post("/feedback", {**click, "feedback_token": top["feedback_token"]}, headers=key)
            assert r.status_code == 200 and r.json()["verified"], r.text
            clicked.add(page["request_id"])
        assert _logged(serving_env.feedback_dir, clicked, "click") == clicked
        processes = server.processes()
        assert len(processes) >= 3  # the supervisor, BentoML's arbiter, its workers
    finally:
        server.stop()
    assert not [p for p in processes if p.is_running() and p.status() != "zombie"]  # none left behind
    built = subprocess.run(
        [str(VENV_BIN / "bentoml"), "build", "-f", "serving/bentofile.yaml", ".", "-o", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    bentos = list((serving_env.bentoml_home / "bentos" / "shoprank").glob("*/bento.yaml"))
    assert bentos and serving_env.tag in bentos[0].read_text()


@pytest.mark.slow
@pytest.mark.integration
def test_a_click_is_verified_by_a_replica_that_did_not_serve_the_page(live_server, serving_env):
    """Two replicas of one deployment (separate processes sharing the feedback folder): a page
    served by one is clicked on the other; a forged token is refused by both."""
    other = Server(serving_env.env(), serving_env.root).start()
    try:
        assert other.proc.pid != live_server.proc.pid
        page = live_server.post("/search", {"query": "jacket", "user_id": "user_000011", "k": 4}).json()
        second = page["results"][1]
        click = {"request_id": page["request_id"], "item_id": second["item_id"], "event": "click"}
        r = other.post("/feedback", {**click, "feedback_token": second["feedback_token"]})
        assert r.status_code == 200, r.text
        assert r.json()["verified"] and r.json()["position"] == 2
        forged = {**click, "feedback_token": "2." + second["feedback_token"].split(".")[1][::-1]}
        for server in (live_server, other):
            refused = server.post("/feedback", forged)
            assert refused.status_code == 422 and "not served" in refused.json()["error"]
        assert _logged(serving_env.feedback_dir, {page["request_id"]}, "click") == {page["request_id"]}
    finally:
        other.stop()
