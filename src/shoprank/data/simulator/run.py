"""`shoprank simulate`: a seeded marketplace written as contract tables plus ground truth."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shoprank.config import Simulate
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
from shoprank.data.simulator.users import render_users, sample_users
from shoprank.data.simulator.world import world
from shoprank.logs import log, progress, timed

logger = logging.getLogger(__name__)

WINDOW_START = pd.Timestamp("2026-01-01", tz="UTC")  # fixed so that output depends on the seed only
CHUNK = 2048  # requests per vectorised block; bounds memory (block * samples * candidates floats)
LEXICAL_CANDIDATES = 30  # what the legacy BM25 contributes per search request
TARGET_CANDIDATES = 30  # from the legacy query-category mapping
POPULAR_CANDIDATES = 30  # popularity-weighted fill
TRUTH_DIR = "truth"


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


def simulate(settings: Simulate, profile: str | None = None, seed: int | None = None) -> Simulation:
    """Generate a marketplace of the given profile; deterministic for a seed."""
    size = settings.sized(profile)
    market, c, legacy = settings.market, settings.clicks, settings.legacy
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

    n_cand, page = market.candidates_per_request, market.page_size
    exam = click_model.examination(page, c.examination_decay)
    draw_type = sample_groups(items.type, w.n_types)
    draw_sub = sample_groups(items.sub, len(w.subs))
    draw_top = sample_groups(items.top, len(w.tops))
    pop_score = np.log1p(items.popularity) / np.log1p(items.popularity.max() + 1)
    out: dict[str, list[np.ndarray]] = {
        k: [] for k in ("cand", "attr", "buy", "legacy", "shown", "prop", "clicked", "purchased", "p_click")
    }
    chunks = range(0, len(req), CHUNK)
    for lo in progress(chunks, "simulating sessions", total=len(chunks)):
        rows = np.arange(lo, min(lo + CHUNK, len(req)))
        cand = _retrieve(items, req, rows, lex_top, q_of, draw_type, draw_sub, draw_top, n_cand, rng_sess)
        lex = index.pair_scores(qmat, np.repeat(np.maximum(q_of[rows], 0), n_cand), cand.ravel())
        lex = lex.reshape(cand.shape) * (q_of[rows] >= 0)[:, None]
        lex = lex / (lex.max(axis=1, keepdims=True) + 1e-9)
        score = legacy.w_lexical * lex + legacy.w_popularity * pop_score[cand]
        shown = plackett_luce(score, legacy.temperature, page, rng_sess)  # (r, page) columns of cand
        prop = propensities(score, shown, legacy.temperature, legacy.propensity_samples, rng_sess)
        attr = click_model.attractiveness(items, users, req, rows, cand, size.days, c, rng_sess)
        p_click = exam[None, :] * np.take_along_axis(attr, shown, axis=1)
        clicked = rng_sess.random(p_click.shape) < p_click
        # every candidate's, for the truth: what a ranking by expected sales is scored with
        buy = click_model.purchase_probability(items, users, req, rows, cand, c)
        p_buy = np.take_along_axis(buy, shown, axis=1)
        purchased = clicked & (rng_sess.random(p_click.shape) < p_buy)
        for k, v in (
            ("cand", cand),
            ("attr", attr),
            ("buy", buy),
            ("legacy", score),
            ("shown", shown),
            ("prop", prop),
            ("clicked", clicked),
            ("purchased", purchased),
            ("p_click", p_click),
        ):
            out[k].append(v)
    arr = {k: np.concatenate(v) for k, v in out.items()}
    sim = _assemble(w, items, req, arr, catalog, user_table, item_truth, user_truth, exam, size.days)
    sim.summary = summarize(sim)
    return sim


def _assemble(w, items, req, arr, catalog, user_table, item_truth, user_truth, exam, days) -> Simulation:
    n_req, page = arr["shown"].shape
    n_cand = arr["cand"].shape[1]
    request_ids = np.array([f"req_{i:07d}" for i in range(n_req)], dtype=object)
    item_ids = catalog["item_id"].to_numpy()
    ts = (WINDOW_START + pd.to_timedelta(req.day, unit="D")).floor("s")
    shown_items = np.take_along_axis(arr["cand"], arr["shown"], axis=1)
    query = np.array(req.query, dtype=object)
    impressions = pd.DataFrame(
        {
            "request_id": np.repeat(request_ids, page),
            "ts": np.repeat(ts, page),
            "user_id": np.repeat(user_table["user_id"].to_numpy()[req.user], page),
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
    requests = pd.DataFrame(
        {
            "request_id": request_ids,
            "ts": ts,
            "intent": np.array(INTENT_NAMES, dtype=object)[req.intent],
            "target_level": np.array(["product_type", "subcategory", "category"], dtype=object)[req.level],
            "target_product_type": [w.types[t].name for t in req.target_type],
            "target_category": [w.tops[t].name for t in req.target_top],
            "query": query,
            "query_name": req.query_name,
            **{f"asked_{k}": v for k, v in requested_attributes(w, req).items()},
        }
    )
    truth = {
        "items": item_truth,
        "users": user_truth,
        "requests": requests,
        "candidates": candidates,
        "examination": pd.DataFrame({"position": np.arange(1, page + 1), "examination": exam}),
        "impressions": pd.DataFrame(
            {
                "request_id": impressions["request_id"],
                "item_id": impressions["item_id"],
                "p_click": arr["p_click"].ravel(),
            }
        ),
    }
    tables = {"catalog": catalog, "users": user_table, "impressions": impressions}
    return Simulation(tables=tables, truth=truth)


def summarize(sim: Simulation) -> dict:
    """Headline figures of a simulated data set (what the main job prints)."""
    from shoprank.evaluation.metrics import auc, expected_auc

    imp, truth = sim.tables["impressions"], sim.truth
    created = sim.tables["catalog"]["created_at"]
    window_start = imp["ts"].min()
    is_new = created >= window_start
    by_pos = imp.groupby("position")["clicked"].mean()
    new_ids = set(sim.tables["catalog"]["item_id"][is_new])
    p = truth["impressions"]["p_click"].to_numpy()
    return {
        "rows": {name: len(df) for name, df in sim.tables.items()},
        "requests": int(imp["request_id"].nunique()),
        "ctr": float(imp["clicked"].mean()),
        "purchase_rate": float(imp["purchased"].mean()),
        "ctr_by_position": {int(k): round(float(v), 4) for k, v in by_pos.items()},
        "new_item_share": float(is_new.mean()),
        "new_item_impression_share": float(imp["item_id"].isin(new_ids).mean()),
        "intents": truth["requests"]["intent"].value_counts(normalize=True).round(4).to_dict(),
        "bayes_auc": float(auc(imp["clicked"].to_numpy(), p)),
        "bayes_auc_expected": float(expected_auc(p)),
    }


def write_simulation(sim: Simulation, out: Path) -> list[Path]:
    """Contract tables in ``out``, ground truth in ``out/truth`` (never a model input)."""
    paths = write_tables(out, sim.tables)
    paths += write_tables(Path(out) / TRUTH_DIR, sim.truth, contract=False)  # not contract tables
    log(logger, "written", out=str(out), files=len(paths))
    return paths
