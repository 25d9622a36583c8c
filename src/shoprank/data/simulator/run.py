"""`shoprank simulate`: a seeded marketplace written as contract tables plus ground truth.

:func:`prepare` draws the catalogue, the users and the requests; :func:`sessions` then
simulates any run of requests (retrieval, the logged ranking, clicks, purchases) and
:func:`chunk_tables` turns it into its rows. :func:`simulate` does all requests at once in
memory; :mod:`shoprank.data.simulator.write` streams them to Parquet chunk by chunk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from shoprank.config import Profile, Simulate
from shoprank.data.io import write_tables
from shoprank.data.simulator import clicks as click_model
from shoprank.data.simulator.catalog import Items, render_catalog, sample_items
from shoprank.data.simulator.legacy import (
    LexicalIndex,
    first_unique_valid,
    plackett_luce,
    propensities,
    sample_groups,
)
from shoprank.data.simulator.requests import (
    INTENT_NAMES,
    LEVEL_SUB,
    LEVEL_TYPE,
    Requests,
    requested_attributes,
    sample_requests,
)
from shoprank.data.simulator.summary import summarize
from shoprank.data.simulator.users import Users, render_users, sample_users
from shoprank.data.simulator.world import World, world
from shoprank.logs import log, progress, timed

logger = logging.getLogger(__name__)

WINDOW_START = pd.Timestamp("2026-01-01", tz="UTC")  # fixed so that output depends on the seed only
CHUNK = 2048  # requests per vectorised block; bounds memory (block * samples * candidates floats)
LEXICAL_CANDIDATES = 30  # what the legacy BM25 contributes per search request
TARGET_CANDIDATES = 30  # from the legacy query-category mapping
POPULAR_CANDIDATES = 30  # popularity-weighted fill
TRUTH_DIR = "truth"
SESSION_ARRAYS = ("cand", "attr", "buy", "legacy", "shown", "prop", "clicked", "purchased", "p_click")


@dataclass
class Simulation:
    tables: dict[str, pd.DataFrame]  # contract tables: catalog, users, impressions
    truth: dict[str, pd.DataFrame]  # ground truth: items, users, requests, candidates, examination
    summary: dict = field(default_factory=dict)


def _retrieve(
    items: Items,
    req: Requests,
    rows: np.ndarray,
    lex_top: np.ndarray,
    q_of: np.ndarray,
    draw_type,
    draw_sub,
    draw_top,
    n_cand: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(len(rows), n_cand) candidate item numbers the legacy engine retrieves."""
    search = q_of[rows] >= 0
    lex = np.where(search[:, None], lex_top[np.maximum(q_of[rows], 0)], -1)
    level = req.level[rows]
    target = np.where(
        (level == LEVEL_TYPE)[:, None],
        draw_type(req.target_type[rows], TARGET_CANDIDATES, rng),
        np.where(
            (level == LEVEL_SUB)[:, None],
            draw_sub(req.target_sub[rows], TARGET_CANDIDATES, rng),
            draw_top(req.target_top[rows], TARGET_CANDIDATES, rng),
        ),
    )
    weights = items.popularity + 1.0
    popular = rng.choice(len(items), size=(len(rows), POPULAR_CANDIDATES), p=weights / weights.sum())
    raw = np.concatenate([lex, target, popular], axis=1)
    invalid = (raw < 0) | (items.created_day[np.maximum(raw, 0)] > req.day[rows][:, None])
    cand, ok = first_unique_valid(raw, invalid, n_cand)
    for r in np.flatnonzero(~ok):  # rare (tiny catalogs): top up with any launched item
        live = np.flatnonzero(items.created_day <= req.day[rows[r]])
        have = [i for i in dict.fromkeys(raw[r][~invalid[r]])]
        extra = rng.permutation(np.setdiff1d(live, have))[: n_cand - len(have)]
        cand[r] = np.concatenate([have, extra])[:n_cand]
    return cand


@dataclass
class Marketplace:
    """What every chunk of requests is simulated against: the catalogue, the users, the requests."""

    w: World
    size: Profile
    settings: Simulate
    items: Items
    users: Users
    req: Requests
    catalog: pd.DataFrame
    user_table: pd.DataFrame
    item_truth: pd.DataFrame
    user_truth: pd.DataFrame
    index: LexicalIndex
    qmat: sparse.csr_matrix
    q_of: np.ndarray
    lex_top: np.ndarray
    rng_sess: np.random.Generator
    simulated: int = 0  # requests simulated so far: the next run starts here

    @property
    def exam(self) -> np.ndarray:
        return click_model.examination(self.settings.market.page_size, self.settings.clicks.examination_decay)


def prepare(settings: Simulate, profile: str | None = None, seed: int | None = None) -> Marketplace:
    """The catalogue, users and requests of a profile; deterministic for a seed."""
    size = settings.sized(profile)
    market, c = settings.market, settings.clicks
    seeds = np.random.SeedSequence(settings.seed if seed is None else seed).spawn(5)
    rng_items, rng_users, rng_req, rng_sess, rng_text = (np.random.default_rng(s) for s in seeds)
    w = world()
    with timed(logger, "catalog", items=size.n_items):
        items = sample_items(w, size.n_items, size.days, market, rng_items)
        catalog, item_truth = render_catalog(w, items, WINDOW_START, market, rng_text)
    with timed(logger, "users", users=size.n_users):
        users = sample_users(w, size.n_users, size.days, market, rng_users)
        user_table, user_truth = render_users(w, users, WINDOW_START, rng_users)
    with timed(logger, "requests", requests=size.n_requests):
        req = sample_requests(w, users, size.n_requests, size.days, market, c.drift, rng_req)
    with timed(logger, "lexical index"):
        index = LexicalIndex(catalog["title"].tolist())
        queries, q_of = np.unique(np.array(req.query, dtype=object), return_inverse=True)
        q_of = np.where(np.array(req.query, dtype=object) == "", -1, q_of)
        qmat = index.query_matrix(list(queries))
        lex_top = index.top_items(qmat, LEXICAL_CANDIDATES)
    return Marketplace(
        w, size, settings, items, users, req, catalog, user_table, item_truth, user_truth,
        index, qmat, q_of, lex_top, rng_sess,
    )  # fmt: skip


def sessions(m: Marketplace, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Requests ``lo`` to ``hi`` shown, clicked and bought, in blocks of :data:`CHUNK` requests.

    The blocks start at multiples of :data:`CHUNK` and draw from one generator in order, so
    any split of the requests into consecutive runs of whole blocks gives the same output;
    runs are therefore simulated in order, each starting where the last one ended.
    """
    if lo != m.simulated or (hi % CHUNK and hi != len(m.req)):
        raise ValueError(
            f"requests are simulated in order, in whole blocks, from {m.simulated}: not {lo}-{hi}"
        )
    items, req, c, legacy = m.items, m.req, m.settings.clicks, m.settings.legacy
    n_cand, page = m.settings.market.candidates_per_request, m.settings.market.page_size
    exam, rng = m.exam, m.rng_sess
    draw_type = sample_groups(items.type, m.w.n_types)
    draw_sub = sample_groups(items.sub, len(m.w.subs))
    draw_top = sample_groups(items.top, len(m.w.tops))
    pop_score = np.log1p(items.popularity) / np.log1p(items.popularity.max() + 1)
    out: dict[str, list[np.ndarray]] = {k: [] for k in SESSION_ARRAYS}
    for start in progress(range(lo, hi, CHUNK), "simulating sessions", total=-(-(hi - lo) // CHUNK)):
        rows = np.arange(start, min(start + CHUNK, hi))
        cand = _retrieve(items, req, rows, m.lex_top, m.q_of, draw_type, draw_sub, draw_top, n_cand, rng)
        lex = m.index.pair_scores(m.qmat, np.repeat(np.maximum(m.q_of[rows], 0), n_cand), cand.ravel())
        lex = lex.reshape(cand.shape) * (m.q_of[rows] >= 0)[:, None]
        lex = lex / (lex.max(axis=1, keepdims=True) + 1e-9)
        score = legacy.w_lexical * lex + legacy.w_popularity * pop_score[cand]
        shown = plackett_luce(score, legacy.temperature, page, rng)  # (r, page) columns of cand
        prop = propensities(score, shown, legacy.temperature, legacy.propensity_samples, rng)
        attr = click_model.attractiveness(items, m.users, req, rows, cand, m.size.days, c, rng)
        p_click = exam[None, :] * np.take_along_axis(attr, shown, axis=1)
        clicked = rng.random(p_click.shape) < p_click
        # every candidate's, for the truth: what a ranking by expected sales is scored with
        buy = click_model.purchase_probability(items, m.users, req, rows, cand, c)
        p_buy = np.take_along_axis(buy, shown, axis=1)
        purchased = clicked & (rng.random(p_click.shape) < p_buy)
        block = (cand, attr, buy, score, shown, prop, clicked, purchased, p_click)
        for k, v in zip(SESSION_ARRAYS, block, strict=True):
            out[k].append(v)
    m.simulated = hi
    return {k: np.concatenate(v) for k, v in out.items()}


def simulate(settings: Simulate, profile: str | None = None, seed: int | None = None) -> Simulation:
    """Generate a marketplace of the given profile in memory; deterministic for a seed."""
    m = prepare(settings, profile, seed)
    tables, truth = static_tables(m)
    impressions, per_request = chunk_tables(m, 0, sessions(m, 0, len(m.req)))
    sim = Simulation(tables={**tables, "impressions": impressions}, truth={**truth, **per_request})
    sim.summary = summarize(sim)
    return sim


def static_tables(m: Marketplace) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The tables written once: catalogue and users, and their truth."""
    exam = m.exam
    examination = pd.DataFrame({"position": np.arange(1, len(exam) + 1), "examination": exam})
    return (
        {"catalog": m.catalog, "users": m.user_table},
        {"items": m.item_truth, "users": m.user_truth, "examination": examination},
    )


def chunk_tables(
    m: Marketplace, lo: int, arr: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Requests ``lo`` onwards (``arr`` from :func:`sessions`): their impressions and truth tables."""
    w, req = m.w, m.req
    n_req, page = arr["shown"].shape
    n_cand = arr["cand"].shape[1]
    rows = slice(lo, lo + n_req)
    request_ids = np.array([f"req_{i:07d}" for i in range(lo, lo + n_req)], dtype=object)
    item_ids = m.catalog["item_id"].to_numpy()
    ts = (WINDOW_START + pd.to_timedelta(req.day[rows], unit="D")).floor("s")
    shown_items = np.take_along_axis(arr["cand"], arr["shown"], axis=1)
    query = np.array(req.query[rows], dtype=object)
    impressions = pd.DataFrame(
        {
            "request_id": np.repeat(request_ids, page),
            "ts": np.repeat(ts, page),
            "user_id": np.repeat(m.user_table["user_id"].to_numpy()[req.user[rows]], page),
            "query": np.repeat(query, page),
            "item_id": item_ids[shown_items.ravel()],
            "position": np.tile(np.arange(1, page + 1), n_req),
            "clicked": arr["clicked"].ravel().astype("int8"),
            "purchased": arr["purchased"].ravel().astype("int8"),
            "propensity": arr["prop"].ravel(),
        }
    )
    position = np.zeros((n_req, n_cand), dtype=np.int64)  # 0: retrieved but not shown
    np.put_along_axis(position, arr["shown"], np.arange(1, page + 1)[None, :], axis=1)
    candidates = pd.DataFrame(
        {
            "request_id": np.repeat(request_ids, n_cand),
            "item_id": item_ids[arr["cand"].ravel()],
            "attractiveness": arr["attr"].ravel(),
            "p_purchase": arr["buy"].ravel(),  # P(purchase | click)
            "legacy_score": arr["legacy"].ravel(),
            "position": position.ravel(),
        }
    )
    part = req.rows(lo, lo + n_req)
    requests = pd.DataFrame(
        {
            "request_id": request_ids,
            "ts": ts,
            "intent": np.array(INTENT_NAMES, dtype=object)[part.intent],
            "target_level": np.array(["product_type", "subcategory", "category"], dtype=object)[part.level],
            "target_product_type": [w.types[t].name for t in part.target_type],
            "target_category": [w.tops[t].name for t in part.target_top],
            "query": query,
            "query_name": part.query_name,
            **{f"asked_{k}": v for k, v in requested_attributes(w, part).items()},
        }
    )
    p_click = pd.DataFrame(
        {
            "request_id": impressions["request_id"],
            "item_id": impressions["item_id"],
            "p_click": arr["p_click"].ravel(),
        }
    )
    return impressions, {"requests": requests, "candidates": candidates, "impressions": p_click}


def write_simulation(sim: Simulation, out: Path) -> list[Path]:
    """Contract tables in ``out``, ground truth in ``out/truth`` (never a model input)."""
    paths = write_tables(out, sim.tables)
    paths += write_tables(Path(out) / TRUTH_DIR, sim.truth, contract=False)  # not contract tables
    log(logger, "written", out=str(out), files=len(paths))
    return paths
