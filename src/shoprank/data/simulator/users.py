"""Shoppers with latent preferences that drift slowly across the window."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shoprank.config import Market
from shoprank.data.simulator.world import World
from shoprank.data.vocab import DEVICES, REGIONS


@dataclass
class Users:
    """Latent user arrays. Preferences move linearly from *_start to *_end over the window."""

    created_day: np.ndarray  # days since the window start (negative: before it)
    activity: np.ndarray  # relative request rate
    top_pref_start: np.ndarray  # (n, n_tops) category preference, rows sum to 1
    top_pref_end: np.ndarray
    brand_aff_start: np.ndarray  # (n, n_brands) brand affinity ~ N(0, 0.7)
    brand_aff_end: np.ndarray
    price_sens_start: np.ndarray  # >= 0: how much a high price puts them off
    price_sens_end: np.ndarray
    novelty: np.ndarray  # appetite for new items; negative means averse

    def __len__(self) -> int:
        return len(self.created_day)

    def at(self, user: np.ndarray, tau: np.ndarray, drift: float) -> tuple[np.ndarray, ...]:
        """Preferences of ``user`` at window fraction ``tau`` in [0, 1].

        Returns (top_pref (r, n_tops), brand_aff (r, n_brands), price_sens (r,)).
        """
        lam = np.clip(drift * tau, 0, 1)[:, None]
        top = (1 - lam) * self.top_pref_start[user] + lam * self.top_pref_end[user]
        brand = (1 - lam) * self.brand_aff_start[user] + lam * self.brand_aff_end[user]
        price = (1 - lam[:, 0]) * self.price_sens_start[user] + lam[:, 0] * self.price_sens_end[user]
        return top, brand, price


def sample_users(w: World, n: int, days: int, market: Market, rng: np.random.Generator) -> Users:
    n_tops, n_brands = len(w.tops), len(w.brands)
    is_new = rng.random(n) < market.new_user_share
    created_day = np.where(is_new, rng.random(n) * days * 0.9, -rng.random(n) * 1000)
    # a shopper cares about few categories: a sparse Dirichlet; the end point keeps
    # most of the start so that drift is slow and partial
    start = rng.dirichlet(np.full(n_tops, 0.4), size=n)
    end = 0.5 * start + 0.5 * rng.dirichlet(np.full(n_tops, 0.4), size=n)
    brand_start = rng.normal(0, 0.7, size=(n, n_brands))
    brand_end = 0.7 * brand_start + 0.3 * rng.normal(0, 0.7, size=(n, n_brands))
    price_start = rng.gamma(2.0, 0.5, size=n)
    price_end = np.clip(price_start + rng.normal(0, 0.3, size=n), 0, None)
    return Users(
        created_day=created_day,
        activity=rng.lognormal(0, 1.0, size=n),
        top_pref_start=start,
        top_pref_end=end,
        brand_aff_start=brand_start,
        brand_aff_end=brand_end,
        price_sens_start=price_start,
        price_sens_end=price_end,
        novelty=rng.normal(0.3, 0.6, size=n),
    )


def render_users(
    w: World, users: Users, start: pd.Timestamp, rng: np.random.Generator
) -> tuple[pd.DataFrame, ...]:
    """Return (users table, latent-preference truth table)."""
    n = len(users)
    ids = np.array([f"user_{i:06d}" for i in range(n)], dtype=object)
    table = pd.DataFrame(
        {
            "user_id": ids,
            "created_at": (start + pd.to_timedelta(users.created_day, unit="D")).floor("s"),
            "region": np.array(REGIONS)[rng.integers(len(REGIONS), size=n)],
            "device": np.array(DEVICES)[rng.integers(len(DEVICES), size=n)],
        }
    )
    truth = pd.DataFrame(
        {
            "user_id": ids,
            "price_sensitivity": users.price_sens_start,
            "novelty_appetite": users.novelty,
            "activity": users.activity,
        }
    )
    for t, top in enumerate(w.tops):
        truth[f"pref_start:{top.name}"] = users.top_pref_start[:, t]
        truth[f"pref_end:{top.name}"] = users.top_pref_end[:, t]
    return table, truth
