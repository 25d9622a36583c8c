"""The simulator's truth for search: how attractive any catalogue item is to a logged request.

The simulated batch keeps the noisy attractiveness of the 50 candidates the legacy engine
retrieved (truth/candidates.parquet); a search service returns other items. So this
rebuilds the simulator's latent world (items, shoppers, requests) from the seed in
params.yaml, replaying the draws of :func:`shoprank.data.simulator.run.simulate` that come
before the sessions, and scores any item with the click model's utility terms
(:func:`shoprank.data.simulator.clicks.utility_terms`) without the per-(request, item)
noise: the **true utility**, and its ``sigmoid``, the noise-free P(click | examined).
The rebuild is checked against the batch's truth tables (every query, every item's
product type, every shopper's pseudonym), so a params.yaml that drifted from the batch is
an error, not a wrong figure.

Metrics of a ranked list of item ids for one request (:func:`scores`):

- ``ndcg@10``: DCG of the list's top 10 (gain: the noise-free attractiveness, discount
  ``1 / log2(position + 1)``) over the DCG of the oracle's top 10, where the oracle orders
  the whole catalogue by that gain (``ideal="catalogue"``) or only the given candidates
  (``ideal=<ids>``: what a re-ranker of those candidates could reach at best);
- ``type@10``: the share of the 10 slots holding an item of the product type the shopper
  asked for (a slot left empty counts as not of that type).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shoprank.config import Params
from shoprank.data.simulator import clicks
from shoprank.data.simulator.catalog import Items, sample_items
from shoprank.data.simulator.requests import Requests, sample_requests
from shoprank.data.simulator.run import TRUTH_DIR
from shoprank.data.simulator.users import Users, sample_users
from shoprank.data.simulator.world import world

K = 10


def latent_world(params: Params) -> tuple[Items, Users, Requests, int]:
    """The simulator's latent items, shoppers and requests of ``params.simulate`` and the window's days.

    The same seed sequence and draws as ``simulate`` (its catalogue text and sessions use
    other generators, so they need not be replayed).
    """
    s = params.simulate
    size = s.sized()
    rng_items, rng_users, rng_req = (
        np.random.default_rng(q) for q in np.random.SeedSequence(s.seed).spawn(5)[:3]
    )
    w = world()
    items = sample_items(w, size.n_items, size.days, s.market, rng_items)
    users = sample_users(w, size.n_users, size.days, s.market, rng_users)
    req = sample_requests(w, users, size.n_requests, size.days, s.market, s.clicks.drift, rng_req)
    return items, users, req, size.days


@dataclass
class Request:
    """A logged search request: what to send (``query``, the shopper's own ``user_id``) and its truth."""

    request_id: str
    index: int  # the simulator's request number
    query: str
    user_id: str
    target_level: str  # product_type, subcategory or category
    target_product_type: str


class SearchTruth:
    """The batch's truth (``paths.raw``/truth) with the rebuilt world that scores any item."""

    def __init__(self, params: Params):
        folder = Path(params.paths.raw) / TRUTH_DIR
        if not (folder / "requests.parquet").is_file():
            raise FileNotFoundError(
                f"{folder}: no simulator truth (the batch is not simulated, or not pulled)"
            )
        self.requests = pd.read_parquet(folder / "requests.parquet")
        items = pd.read_parquet(folder / "items.parquet", columns=["item_id", "product_type"])
        shoppers = pd.read_parquet(folder / "users.parquet", columns=["user_id"])["user_id"].astype(str)
        self.items, self.users, self.req, self.days = latent_world(params)
        self.clicks = params.simulate.clicks
        self.row_of = {str(i): r for r, i in enumerate(items["item_id"])}
        self.product_type = items["product_type"].astype(str).to_numpy()
        self._check(items, shoppers, params)

    def _check(self, items: pd.DataFrame, shoppers: pd.Series, params: Params) -> None:
        from shoprank.privacy import load_key, pseudonym

        w = world()
        why = []
        if len(items) != len(self.items) or list(self.product_type) != [
            w.types[t].name for t in self.items.type
        ]:
            why.append("the catalogue's product types")
        if len(self.requests) != len(self.req) or list(self.requests["query"]) != list(self.req.query):
            why.append("the requests' queries")
        key = load_key(params.paths.secrets)
        sample = np.unique(np.linspace(0, len(shoppers) - 1, 20).astype(int))
        if any(pseudonym(f"user_{i:06d}", key) != shoppers.iloc[i] for i in sample):
            why.append(f"the shoppers' pseudonyms under the key in {params.paths.secrets}")
        if why:
            raise ValueError(
                f"the simulation of params.yaml (simulate.profile {params.simulate.profile!r}, seed "
                f"{params.simulate.seed}) differs from the batch in {params.paths.raw} in {', '.join(why)}: "
                "rebuild the batch (`dvc repro`) or restore its params"
            )

    def search_requests(self, request_ids: Sequence[str]) -> list[Request]:
        """The requests among ``request_ids`` that carry a query, in the batch's order."""
        wanted = self.requests[self.requests["request_id"].isin(set(request_ids))]
        wanted = wanted[wanted["query"].astype(str).str.len() > 0]
        out = []
        for rid, q, level, pt in wanted[
            ["request_id", "query", "target_level", "target_product_type"]
        ].itertuples(index=False):
            index = int(str(rid).removeprefix("req_"))
            out.append(
                Request(str(rid), index, str(q), f"user_{self.req.user[index]:06d}", str(level), str(pt))
            )
        return out

    def attractiveness(self, request: Request, rows: np.ndarray) -> np.ndarray:
        """The noise-free P(click | examined) of catalogue ``rows`` for ``request``."""
        rows = np.asarray(rows, dtype=np.int64)
        terms = clicks.utility_terms(
            self.items, self.users, self.req, np.array([request.index]), rows[None, :], self.days, self.clicks
        )
        utility = self.clicks.base_utility + sum(t[0] for t in terms.values())
        return 1.0 / (1.0 + np.exp(-np.asarray(utility, dtype=np.float64)))

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        missing = [i for i in item_ids if i not in self.row_of]
        if missing:
            raise KeyError(f"items {missing[:3]} are not in the simulated catalogue")
        return np.array([self.row_of[i] for i in item_ids], dtype=np.int64)

    def scores(
        self, request: Request, ranked: Sequence[str], ideal: str | Sequence[str] = "catalogue"
    ) -> dict:
        """``ndcg@10`` of ``ranked`` against the oracle over ``ideal`` and its ``type@10`` (module doc)."""
        top = self.rows(list(ranked)[:K])
        pool = np.arange(len(self.items)) if isinstance(ideal, str) else self.rows(list(ideal))
        best = np.sort(self.attractiveness(request, pool))[::-1][:K]
        gain = self.attractiveness(request, top)
        discount = 1.0 / np.log2(np.arange(2, K + 2))
        ideal_dcg = float(best @ discount[: len(best)])
        ndcg = float(gain @ discount[: len(gain)]) / ideal_dcg if ideal_dcg > 0 else 0.0
        same = self.product_type[top] == request.target_product_type
        return {"ndcg@10": ndcg, "type@10": float(same.sum()) / K}
