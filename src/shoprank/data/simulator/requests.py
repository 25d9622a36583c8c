"""Requests: who asks, when, with which intent, and the query text they type."""

from __future__ import annotations

import string
from dataclasses import dataclass, fields

import numpy as np

from shoprank.config import Market
from shoprank.data.simulator.users import Users
from shoprank.data.simulator.world import World
from shoprank.data.vocab import QUERY_TEMPLATES

INTENT_NAMES = ("buy", "browse", "compare", "price", "learn", "recommend")
RECOMMEND = INTENT_NAMES.index("recommend")
LEVEL_TYPE, LEVEL_SUB, LEVEL_TOP = 0, 1, 2
SLICE = 65_536  # requests whose preferences are computed at once (bounds the temporary arrays)


@dataclass
class Requests:
    user: np.ndarray
    day: np.ndarray  # days since the window start
    intent: np.ndarray  # index into INTENT_NAMES
    level: np.ndarray  # how specific the target is: LEVEL_TYPE, LEVEL_SUB or LEVEL_TOP
    target_type: np.ndarray  # the product type in the shopper's mind
    target_sub: np.ndarray
    target_top: np.ndarray
    colour: np.ndarray  # requested attributes, -1 where not asked for
    material: np.ndarray
    size: np.ndarray
    feature: np.ndarray
    brand: np.ndarray
    price_cap: np.ndarray  # inf where the query names no price
    query: list[str]
    query_name: list[str]  # the product-type phrase the query used ('' if none)

    def __len__(self) -> int:
        return len(self.user)

    def rows(self, lo: int, hi: int) -> Requests:
        """Requests ``lo`` to ``hi`` (views, not copies)."""
        return Requests(**{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})


def _slots(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def sample_requests(
    w: World, users: Users, n: int, days: int, market: Market, drift: float, rng: np.random.Generator
) -> Requests:
    # who: proportional to activity; when: uniform after they signed up
    user = rng.choice(len(users), size=n, p=users.activity / users.activity.sum())
    first = np.clip(users.created_day[user], 0, None)
    day = first + rng.random(n) * (days - first)
    order = np.argsort(day, kind="stable")  # requests in time order
    user, day = user[order], day[order]
    tau = day / days

    # what: a category from the user's drifting preference, then a product type in it
    u_top = rng.random((n, 1))
    top = np.empty(n, dtype=np.int64)
    for lo in range(0, n, SLICE):  # preferences of a slice at a time: (r, n_brands) floats per slice
        s = slice(lo, lo + SLICE)
        top_pref, _, _ = users.at(user[s], tau[s], drift)
        top[s] = (u_top[s] > np.cumsum(top_pref, axis=1)).sum(axis=1).clip(0, len(w.tops) - 1)
    # a uniform product type of each request's category: one bounded draw per request, in order
    by_top = np.argsort(w.type_top, kind="stable")  # product types grouped by category
    per_top = np.bincount(w.type_top, minlength=len(w.tops))
    first = np.concatenate([[0], np.cumsum(per_top)[:-1]])
    type_ = by_top[first[top] + rng.integers(0, per_top[top])]

    intents = list(market.intents)
    search = rng.random(n) < market.search_share
    intent = np.where(
        search,
        np.array([INTENT_NAMES.index(i) for i in intents])[
            rng.choice(len(intents), size=n, p=np.array(list(market.intents.values())))
        ],
        RECOMMEND,
    )
    r = Requests(
        user=user,
        day=day,
        intent=intent,
        level=np.where(search, LEVEL_TYPE, LEVEL_TOP),
        target_type=type_,
        target_sub=w.type_sub[type_],
        target_top=top,
        colour=np.full(n, -1),
        material=np.full(n, -1),
        size=np.full(n, -1),
        feature=np.full(n, -1),
        brand=np.full(n, -1),
        price_cap=np.full(n, np.inf),
        query=[""] * n,
        query_name=[""] * n,
    )
    u = rng.random((n, 8))  # uniform draws for the slot choices below
    texts: dict[str, str] = {}
    for i in np.flatnonzero(search):
        tops, pt = w.tops[top[i]], w.types[type_[i]]
        templates = QUERY_TEMPLATES[INTENT_NAMES[intent[i]]]
        tmpl = templates[int(u[i, 0] * len(templates))]
        slots = _slots(tmpl)
        fill: dict[str, str] = {}
        if "pt" in slots:
            fill["pt"] = r.query_name[i] = pt.query_names[int(u[i, 1] * len(pt.query_names))]
        if "subcategory" in slots:
            fill["subcategory"] = w.subs[w.type_sub[type_[i]]].lower()
            r.level[i] = LEVEL_SUB
        if "category" in slots:
            fill["category"] = tops.name.lower()
            r.level[i] = LEVEL_TOP
        if "colour" in slots:
            r.colour[i] = int(u[i, 2] * len(tops.colours))
            fill["colour"] = tops.colours[r.colour[i]]
        if "material" in slots:
            r.material[i] = int(u[i, 3] * len(tops.materials))
            fill["material"] = tops.materials[r.material[i]]
        if "size" in slots:
            if tops.sizes:
                r.size[i] = int(u[i, 4] * len(tops.sizes))
                fill["size"] = tops.sizes[r.size[i]]
            else:
                tmpl, slots = "{feature} {pt}", slots - {"size"}
        if "feature" in slots:
            r.feature[i] = int(u[i, 5] * len(pt.features))
            fill["feature"] = pt.features[r.feature[i]]
        if "brand" in slots:
            brands = np.flatnonzero(w.brand_top == top[i])
            r.brand[i] = brands[int(u[i, 6] * len(brands))]
            fill["brand"] = w.brands[r.brand[i]].lower()
            fill["brand2"] = w.brands[brands[(int(u[i, 6] * len(brands)) + 1) % len(brands)]].lower()
            if INTENT_NAMES[intent[i]] == "compare":
                r.brand[i] = -1  # comparing two brands is not insisting on one
        if "price" in slots:
            cap = max(5, round(pt.price * (0.6 + 0.4 * u[i, 7]), -1))
            r.price_cap[i] = cap
            fill["price"] = str(int(cap))
        text = tmpl.format(**fill)
        r.query[i] = texts.setdefault(text, text)  # one string per distinct query
    return r


def requested_attributes(w: World, r: Requests) -> dict[str, list]:
    """The attributes each query insists on, as names (None where not asked for)."""
    tops = [w.tops[t] for t in r.target_top]
    types = [w.types[t] for t in r.target_type]

    def names(codes: np.ndarray, values) -> list:
        return [values(i)[c] if c >= 0 else None for i, c in enumerate(codes)]

    return {
        "colour": names(r.colour, lambda i: tops[i].colours),
        "material": names(r.material, lambda i: tops[i].materials),
        "size": names(r.size, lambda i: tops[i].sizes),
        "feature": names(r.feature, lambda i: types[i].features),
        "brand": [w.brands[b] if b >= 0 else None for b in r.brand],
        "price_cap": np.where(np.isfinite(r.price_cap), r.price_cap, np.nan).tolist(),
    }
