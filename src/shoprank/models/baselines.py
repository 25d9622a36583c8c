"""Baselines trained and evaluated on the same training set as BERT-CTR every run.

Every model answers ``predict(frame, with_position)``: P(click) for the rows of a
training-set :class:`~shoprank.inputs.frame.Frame`. ``with_position=True`` uses the logged
position (the logged
click likelihood, for AUC and log loss); ``False`` gives the position-free relevance
that rankings are built from.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from shoprank.inputs.apply import derive
from shoprank.inputs.frame import Frame
from shoprank.models.preprocess import FeatureSpec

SERVING_POSITION = 1  # position-aware baselines are scored as if every item were on top


class PopularityModel:
    """Smoothed historical CTR of the item, corrected for the positions it was shown at."""

    def __init__(self, prior_strength: float = 20.0):
        self.prior_strength = prior_strength
        self.item_ctr: dict[str, float] = {}
        self.global_ctr = 0.0
        self.position_ctr: dict[int, float] = {}

    def fit(self, frame: Frame, spec: FeatureSpec) -> PopularityModel:
        return self.fit_chunks([frame.df], spec)

    def fit_chunks(self, chunks: Iterable[pd.DataFrame], spec: FeatureSpec) -> PopularityModel:
        """Fit on the split's rows in chunks (each with the label, position and item id columns).

        What is kept across chunks is counted per position and per (item, position), so
        memory follows the catalogue and the page, not the number of impressions.
        """
        shown = item_clicks = pos_clicks = pd.Series(dtype="float64")  # per (item, position), item, position
        for df in chunks:
            y = df[spec.label].astype(float)
            item, pos = df[spec.item_id].rename("item"), df[spec.position].astype(int).rename("position")
            shown = _plus(shown, y.groupby([item, pos]).size().astype(float))
            item_clicks = _plus(item_clicks, y.groupby(item).sum())
            pos_clicks = _plus(pos_clicks, y.groupby(pos).sum())
        pos_shown = shown.groupby(level="position").sum()
        g = self.global_ctr = float(pos_clicks.sum() / pos_shown.sum())
        pos_ctr = pos_clicks / pos_shown
        self.position_ctr = (pos_ctr / g).to_dict()
        # clicks over expected clicks at the positions shown: a position-debiased CTR
        expected = (
            (shown * pos_ctr.reindex(shown.index.get_level_values("position")).to_numpy())
            .groupby(level="item")
            .sum()
        )
        a = self.prior_strength
        # a pseudo-impressions at the global CTR: a*g pseudo-clicks over a*g expected, so a
        # rarely shown item's click rate shrinks towards g itself
        self.item_ctr = ((item_clicks + a * g) / (expected + a * g)).mul(g).to_dict()
        self.spec = spec
        return self

    def predict(self, frame: Frame, with_position: bool = False) -> np.ndarray:
        df = frame.df
        p = df[self.spec.item_id].map(self.item_ctr).fillna(self.global_ctr).to_numpy(np.float64)
        if with_position:
            p = p * df[self.spec.position].map(self.position_ctr).fillna(1.0).to_numpy()
        return np.clip(p, 1e-6, 1 - 1e-6)


def _plus(total: pd.Series, part: pd.Series) -> pd.Series:
    """Counts summed by key; ``total`` empty before the first chunk."""
    return part if total.empty else total.add(part, fill_value=0)


def tabular(frame: Frame, spec: FeatureSpec, position: int | None) -> pd.DataFrame:
    """LightGBM's view: its declared numeric and categorical inputs, has_query, position."""
    missing = [c for c in spec.numeric if c not in frame.df.columns]
    if missing:  # derived inputs a caller has not added yet (the query-item cosine reads vectors)
        derive(frame, missing)
    df = frame.df
    nan = pd.Series(np.nan, index=df.index)  # an input the frame cannot give: missing
    x = pd.DataFrame({c: df[c].astype("float64") if c in df else nan for c in spec.numeric}, index=df.index)
    for c in spec.categorical:
        x[c] = df[c].astype("string").fillna("<na>").astype("category")
    x["has_query"] = (df[spec.query].fillna("") != "").astype("float64")
    x["position"] = df[spec.position].astype("float64") if position is None else float(position)
    return x


class LightGBMModel:
    """Gradient-boosted trees on tabular features plus query-item text similarity.

    With ``purchase=True`` a second booster learns P(purchase | click) from the clicked
    training rows alone (trees have no shared layers to train ESMM-style, and the clicked
    rows are the ones where a purchase can happen); the neural candidates' head learns
    from every impression instead.
    """

    def __init__(self, params: dict | None = None, rounds: int = 400, seed: int = 0):
        self.params = {
            "objective": "binary",
            "learning_rate": 0.05,
            "num_leaves": 63,
            "min_data_in_leaf": 50,
            "feature_fraction": 0.9,
            "verbose": -1,
            "seed": seed,
            "num_threads": 0,
            **(params or {}),
        }
        self.rounds = rounds

    def fit(self, train: Frame, val: Frame, spec: FeatureSpec, purchase: bool = False) -> LightGBMModel:
        labels = [c for c in (spec.label, spec.purchased) if c in train.df]
        return self.fit_tabular(
            (tabular(train, spec, None), train.df[labels]),
            (tabular(val, spec, None), val.df[[c for c in labels if c in val.df]]),
            spec,
            purchase,
        )

    def fit_tabular(
        self,
        train: tuple[pd.DataFrame, pd.DataFrame],
        val: tuple[pd.DataFrame, pd.DataFrame],
        spec: FeatureSpec,
        purchase: bool = False,
    ) -> LightGBMModel:
        """Fit on :func:`tabular` rows and their labels (``spec.label``, ``spec.purchased``)."""
        self.spec = spec
        (x_train, y_train), (x_val, y_val) = train, val
        self.categories = {c: x_train[c].cat.categories for c in spec.categorical}
        x_val = self._align(x_val)
        self.booster = self._boost(x_train, y_train[spec.label], x_val, y_val[spec.label])
        self.purchase_booster = None
        if purchase:  # position plays no part in buying once clicked: fixed as at serving
            x_train["position"], x_val["position"] = float(SERVING_POSITION), float(SERVING_POSITION)
            tr, va = (y_train[spec.label] == 1).to_numpy(), (y_val[spec.label] == 1).to_numpy()
            self.purchase_booster = self._boost(
                x_train[tr], y_train.loc[tr, spec.purchased], x_val[va], y_val.loc[va, spec.purchased]
            )
        return self

    def _boost(self, x_train: pd.DataFrame, y_train: pd.Series, x_val: pd.DataFrame, y_val: pd.Series):
        import lightgbm as lgb

        dtrain = lgb.Dataset(x_train, y_train.astype(int))
        dval = lgb.Dataset(x_val, y_val.astype(int), reference=dtrain)
        return lgb.train(
            self.params,
            dtrain,
            self.rounds,
            valid_sets=[dval] if len(x_val) else [],
            callbacks=[lgb.early_stopping(30, verbose=False)] if len(x_val) else [],
        )

    def _align(self, x: pd.DataFrame) -> pd.DataFrame:
        for c, cats in self.categories.items():
            x[c] = pd.Categorical(x[c].astype("string"), categories=cats)
        return x

    def predict(self, frame: Frame, with_position: bool = False) -> np.ndarray:
        x = self._align(tabular(frame, self.spec, None if with_position else SERVING_POSITION))
        return np.asarray(self.booster.predict(x, num_iteration=self.booster.best_iteration))

    def predict_purchase(self, frame: Frame) -> np.ndarray | None:
        """P(purchase | click) per row; None when trained without purchases."""
        booster = getattr(self, "purchase_booster", None)  # absent from models saved before it existed
        if booster is None:
            return None
        x = self._align(tabular(frame, self.spec, SERVING_POSITION))
        return np.asarray(booster.predict(x, num_iteration=booster.best_iteration or None))
