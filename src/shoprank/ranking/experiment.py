"""The service's side of an online experiment: its arms loaded, a request's arm, the page arranged.

Every request is scored by the champion first (features, query vector and frame are read
once). Then, as ``params.experiment`` says:

- no experiment: the champion's page
- ``ab``: the request's unit is hashed into one arm (:mod:`shoprank.experiments.assign`);
  a challenger re-scores the same inputs with its own model, ``legacy`` keeps the order the
  candidates came in; that arm's scores make the page
- ``interleave``: both arms' pages are merged by team draft
  (:mod:`shoprank.experiments.interleave`), each slot remembering the team that picked it

Search and feed pages then get their exploration slots, as without an experiment. Every
slot is logged with its arm and the probability that the service's own randomisation put
the item there (:class:`Arranged`): under A/B that is over the arm draw, so every arm's
page is worked out (each challenger scores every request) and an off-policy estimate of
another ranking can weigh the log's clicks (bench/bench_experiment.py).

An arm that is not in the bundle, does not load, or fails to score at start-up is dropped
with an error in the log and in readiness; its traffic goes to the champion, which keeps
serving (an interleaving experiment that loses an arm stops).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shoprank.artifacts import ARMS_DIR
from shoprank.config import Serve
from shoprank.config_experiment import CHAMPION, LEGACY, Experiment
from shoprank.experiments.assign import arm_for, unit_key
from shoprank.experiments.interleave import team_draft
from shoprank.logs import log
from shoprank.ranking import metrics
from shoprank.ranking.catalog import Catalog
from shoprank.ranking.rerank import diverse_order, explore
from shoprank.ranking.scoring import CHECK_REQUEST, Scored, Scoring

logger = logging.getLogger(__name__)


@dataclass
class Arranged:
    """A response's order and, per shown slot, what the log records."""

    order: np.ndarray  # indices into the scored candidates, in the order shown
    explored: np.ndarray  # per slot: an exploration slot
    propensity: np.ndarray  # per slot: probability of the service's draws that put the item there
    scores: np.ndarray  # per candidate: the scores of the ranking that served (A/B: the arm's)
    arms: list[str | None] | None = None  # per slot: the arm (team) that placed it; None: no experiment
    arm: str | None = None  # A/B: the request's arm


class OnlineExperiment:
    """The experiment this worker runs (or none), with a scorer per model arm."""

    def __init__(
        self,
        experiment: Experiment,
        bundle: Path,
        catalog: Catalog,
        settings: Serve,
        champion: Scoring,
        make_scoring: Callable[[Any], Scoring],
    ):
        self.catalog, self.settings, self.champion = catalog, settings, champion
        self.configured = experiment
        self.scorings: dict[str, Scoring | None] = {}  # arm -> its scoring (None: legacy order)
        self.dropped: dict[str, str] = {}  # arm -> why it does not serve
        for arm in experiment.arms if experiment.active else []:
            if arm.model == CHAMPION:
                self.scorings[arm.name] = champion
            elif arm.model == LEGACY:
                self.scorings[arm.name] = None
            else:
                try:
                    self.scorings[arm.name] = load_arm(bundle / ARMS_DIR / f"{arm.name}.pt", make_scoring)
                except ArmUnusable as exc:
                    self.dropped[arm.name] = str(exc)  # what readiness shows: no error text
                    log(
                        logger,
                        "experiment arm dropped: the champion serves its traffic",
                        arm=arm.name,
                        model=arm.model,
                        reason=str(exc),
                        error=repr(exc.__cause__)[:300],
                        level=logging.ERROR,
                    )
        self.champion_arm = experiment.champion.name if experiment.active else None
        self.shares: dict[str, float] = {}  # the arms that serve, a dropped arm's share the champion's
        for arm in experiment.arms if experiment.active else []:
            name = self.champion_arm if arm.name in self.dropped else arm.name
            if name is not None:
                self.shares[name] = self.shares.get(name, 0.0) + arm.share
        stopped = experiment.mode == "interleave" and bool(self.dropped)
        self.experiment: Experiment | None = experiment if experiment.active and not stopped else None

    @property
    def name(self) -> str | None:
        return self.experiment.name if self.experiment is not None else None

    def describe(self) -> dict[str, Any] | None:
        """What readiness shows: the experiment, the arms that serve and those dropped."""
        if not self.configured.active:
            return None
        return {
            "name": self.configured.name,
            "mode": self.configured.mode,
            "running": self.experiment is not None,
            "arms": [a for a in self.scorings if a not in self.dropped],
            "dropped": self.dropped,
        }

    def use_catalog(self, catalog: Catalog) -> None:
        """A refreshed catalogue: every arm scores over it (called while no request is in flight)."""
        self.catalog = catalog
        for scoring in self.scorings.values():
            if scoring is not None:
                scoring.catalog = catalog

    def prepare(self) -> None:
        """The challengers' fast-path item arrays, after a catalogue refresh."""
        for scoring in self.scorings.values():
            if scoring is not None and scoring is not self.champion:
                scoring.prepare()

    def arm_scores(self, arm: str, s: Scored) -> np.ndarray:
        """An arm's scores of the champion-scored request ``s``."""
        scoring = self.scorings[arm]
        if scoring is None:  # legacy: the order the candidates came in
            return 1.0 - np.arange(len(s.rows)) / max(len(s.rows), 1)
        if scoring is self.champion:
            return s.scores
        scores, failed = scoring.rescore(s)
        if failed:
            metrics.FALLBACKS.labels("experiment", f"arm_{arm}_failed").inc()
            return s.scores  # the champion's ranking rather than popularity's
        return scores

    def arrange(self, s: Scored, k: int | None, rng: np.random.Generator, feed: bool = False) -> Arranged:
        """The request's order: a page of ``k`` (diversity, exploration), or the whole list (None).
        A feed's page spreads categories by ``serve.feed_diversity``, a search's by
        ``serve.search_diversity``."""
        d = self.settings.feed_diversity if feed else self.settings.search_diversity
        e = self.experiment
        if e is None:
            page = self._page(s.scores, s.rows, k, rng, d)
            return Arranged(page[0], page[1], page[2], s.scores)
        if e.mode == "ab":
            arm = arm_for(e, unit_key(e, s.user_id, s.request_id)).name
            if arm in self.dropped:
                arm = self.champion_arm or arm
            by_arm = {a: self.arm_scores(a, s) for a in self.shares}
            order, explored, propensity = self._page(by_arm[arm], s.rows, k, rng, d)
            propensity = self._marginal(s, k, d, by_arm, order, explored, propensity, arm)
            if e.shuffle_share > 0:  # some requests in random order: every item has a probability everywhere
                eps, n = e.shuffle_share, len(s.rows)
                if rng.random() < eps:
                    order, explored = rng.permutation(n)[: len(order)], np.zeros(len(order), bool)
                    propensity = self._marginal(s, k, d, by_arm, order, explored, propensity, None)
                propensity = (1 - eps) * propensity + eps / n
            arms = [None if x else arm for x in explored.tolist()]
            metrics.EXPERIMENT_REQUESTS.labels(e.name, arm).inc()
            return Arranged(order, explored, propensity, by_arm[arm], arms, arm)
        first, second = (a.name for a in e.arms)
        a = self._exploit(self.arm_scores(first, s), s.rows, k, d)
        b = self._exploit(self.arm_scores(second, s), s.rows, k, d)
        merged = team_draft(a, b, len(a), rng)
        team_of = {int(i): (first, second)[t] for i, t in zip(merged.order, merged.team, strict=True)}
        coin = dict(zip(merged.order.tolist(), merged.propensity.tolist(), strict=True))
        if k is None:
            order, explored, propensity = merged.order, np.zeros(len(merged.order), bool), merged.propensity
        else:
            order, explored, propensity = explore(
                merged.order, s.scores, self.catalog.is_new[s.rows], self.settings.explore_share, rng
            )
            propensity = np.where(explored, propensity, [coin.get(int(i), 1.0) for i in order])
        arms = [
            None if x else team_of[int(i)] for i, x in zip(order.tolist(), explored.tolist(), strict=True)
        ]
        metrics.EXPERIMENT_REQUESTS.labels(e.name, "interleaved").inc()
        return Arranged(order, explored, propensity, s.scores, arms)

    def _marginal(
        self,
        s: Scored,
        k: int | None,
        diversity: float,
        by_arm: dict[str, np.ndarray],
        order: np.ndarray,
        explored: np.ndarray,
        drawn: np.ndarray,
        served: str | None,
    ) -> np.ndarray:
        """Per slot of ``order``, the probability that the arms put its item there, over the
        arm draw: the sum over arms of the arm's share times 1 if that arm's page has the item
        there (its exploitation slots, which do not depend on its draws). An explored slot of
        the ``served`` arm's page adds its share times its draw's probability; the other arms'
        own exploration draws are not counted, so there it is a lower bound. ``served`` None:
        ``order`` is no arm's page (a shuffled one)."""
        out = np.where(explored, self.shares[served] * drawn, 0.0) if served else np.zeros(len(order))
        dummy = np.random.default_rng(0)  # an arm's exploitation slots do not depend on its draws
        for arm, share in self.shares.items():
            mine = (order, explored, None)
            page = self._page(by_arm[arm], s.rows, k, dummy, diversity) if arm != served else mine
            n = min(len(page[0]), len(order))
            same = np.zeros(len(order), bool)
            same[:n] = (page[0][:n] == order[:n]) & ~page[1][:n] & ~explored[:n]
            out += share * same
        return out

    def _exploit(self, scores: np.ndarray, rows: np.ndarray, k: int | None, diversity: float) -> np.ndarray:
        """The ranking without exploration: the whole list by score, or a diverse page of ``k``."""
        if k is None:
            return np.argsort(-scores, kind="stable")
        groups = self.catalog.category[rows]
        return diverse_order(scores, groups, min(k, len(scores)), diversity)

    def _page(
        self, scores: np.ndarray, rows: np.ndarray, k: int | None, rng: np.random.Generator, diversity: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = self._exploit(scores, rows, k, diversity)
        if k is None:
            return order, np.zeros(len(order), bool), np.ones(len(order))
        return explore(order, scores, self.catalog.is_new[rows], self.settings.explore_share, rng)


class ArmUnusable(Exception):
    """An arm cannot serve; the message says why in a few words (the cause has the details)."""


def load_arm(path: Path, make_scoring: Callable[[Any], Scoring]) -> Scoring:
    """A challenger's scoring, checked: it loads and scores a few items without falling back."""
    from shoprank.models.scorers import load

    if not path.is_file():
        raise ArmUnusable(f"not in the bundle ({path.name}; run `shoprank package`)")
    try:
        _, scorer = load(path)
        scoring = make_scoring(scorer)
    except Exception as exc:
        raise ArmUnusable(f"its model does not load ({path.name})") from exc
    rows = np.arange(min(len(scoring.catalog), 8))
    s = scoring.score(rows, "warm up", None, CHECK_REQUEST, {})
    if "popularity_scores" in s.fallback:
        raise ArmUnusable("its model fails to score the catalog's items (the error is logged above)")
    scoring.settle_fast_path()
    return scoring
