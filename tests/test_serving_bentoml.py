"""The BentoML service itself on the tiny champion: `bentoml serve` with a key, and `bentoml build`."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT
from tests.serving_fixtures import VENV_BIN, Server


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
