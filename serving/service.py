"""The BentoML service: the packaged champion behind shoprank's HTTP API.

Thin by design: the model comes from the BentoML model store (``shoprank package``),
the logic from :mod:`shoprank.ranking`. The Starlette app of
:mod:`shoprank.ranking.http` is mounted at the root, so the endpoints are
POST /search /recommend /rank /intent /feedback and GET /health /ready /ui /openapi.json, next
to BentoML's own /healthz /readyz /metrics (the service's metrics are also at
/service-metrics). With ``$SHOPRANK_API_KEY`` set, every route of both but health,
readiness and the search page needs the key.

    bentoml serve serving.service:ShopRank        # from the project root
    bentoml build -f serving/bentofile.yaml .     # a Bento of it
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import bentoml

from shoprank.artifacts import MODEL_NAME
from shoprank.config import load_params
from shoprank.ranking.guard import RequireKey
from shoprank.ranking.http import API_KEY_ENV, create_app
from shoprank.ranking.loader import freeze_heap, load_bundle_path
from shoprank.ranking.ranker import Ranker
from shoprank.ranking.reload import Reloader

params = load_params()


def _latest() -> Path:
    """The bundle this service should serve now: ``$SHOPRANK_MODEL``, else the store's latest."""
    return load_bundle_path(os.environ.get("SHOPRANK_MODEL"))


app = create_app(settings=params.serve)  # the ranker is attached when the service instance starts


@bentoml.service(
    name="shoprank",
    workers=params.serve.workers,
    traffic={"timeout": 30},
    resources={"cpu": "2"},
)
@bentoml.asgi_app(app, path="/")
class ShopRank:
    model = bentoml.models.BentoModel(os.environ.get("SHOPRANK_MODEL", f"{MODEL_NAME}:latest"))

    def __init__(self) -> None:
        self.ranker = Ranker(self.model.path, params)
        state = app.state.service
        state.ranker = self.ranker
        freeze_heap()
        # a champion packaged later (select, rollback) is served without a restart
        reload_s = params.serve.reload_s
        state.reloader = Reloader(state, _latest, lambda bundle: Ranker(bundle, params), reload_s)
        state.reloader.start()

    def __is_ready__(self) -> bool:
        return self.ranker is not None


# BentoML's own routes (its /metrics shows the app's counters too) need the key like the app's
cast(Any, ShopRank).add_asgi_middleware(RequireKey, api_key=os.environ.get(API_KEY_ENV))
