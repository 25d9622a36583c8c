"""The hot path of a neural champion: model inputs straight from arrays, one forward pass.

:meth:`Preprocessor.transform` and :func:`~shoprank.inputs.apply.derive` work column by
column in pandas, a fixed cost per column whatever the row count. Here the item columns
are transformed once per refresh of the item table (all items at once), together with
the item parts of every derived input, and a request only gathers its rows, adds the
user's columns and runs each derivation's ``cross`` on the rows (the derivations are the
declared ones, never copied here). The arithmetic is the preprocessor's own (its fitted
vocabularies, means, scales and clipping). A champion that tokenizes texts (fine-tuned or
LoRA BERT-CTR) gets its items' tokens once, from the catalog's texts, and the query's per
request. tests/test_serving_ranker.py checks that inputs and
scores equal those of ``scorer.predict`` on the full frame, and the service checks the
same at start-up: on any difference it uses the pandas path instead.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from shoprank.features.queries import normalise_query
from shoprank.inputs.declare import by_name, groups
from shoprank.inputs.derive import DERIVATIONS, Derivation, repeat
from shoprank.models.attributes import Filled, fill_missing
from shoprank.models.preprocess import UNKNOWN
from shoprank.ranking.features import Lookup


def supports(scorer) -> bool:
    """The neural scorers (BERT-CTR in every mode, no-text)."""
    return getattr(scorer, "pre", None) is not None and hasattr(scorer, "model")


class FastScorer:
    def __init__(self, scorer, features, texts: np.ndarray | None = None, filled: Filled | None = None):
        """``texts``: each item's text, in the item table's order (a champion that tokenizes them).
        ``filled``: the catalogue's missing attributes filled from the text, as the frame path fills them."""
        self.scorer, self.features = scorer, features
        self.pre, self.spec = scorer.pre, scorer.pre.spec
        if self.pre.reads_text and texts is None:
            raise ValueError("this champion tokenizes the item texts: give them")
        self.texts, self.filled = texts, filled
        self._item_tokens: tuple[np.ndarray, np.ndarray] | None = None
        self.model = scorer.model()
        have = set(features.values.columns)
        # the item id is an item column here (the table's rows); the user id a request value
        self.item_cat = [c for c in self.spec.categorical if c in have or c == self.spec.item_id]
        self.user_cat = [c for c in self.spec.categorical if c not in self.item_cat]
        declared = {c: by_name(c) for c in self.spec.numeric}
        self.derived: dict[str, Derivation] = {
            c: DERIVATIONS[x.derive] for c, x in declared.items() if x.derive is not None
        }
        self.item_num = [c for c in self.spec.numeric if c in have and c not in self.derived]
        s = self.spec  # the explanation groups of the model's inputs, as declared
        read = [s.query_text] if self.pre.reads_text else []
        self.groups = groups([*s.numeric, *s.categorical, s.query_embedding, *read, s.history])
        self.user_num = [c for c in self.spec.numeric if c not in have and c not in self.derived]
        self._version = -1
        self._lock = threading.Lock()

    def _item_arrays(self) -> tuple:
        """Per item: categorical codes, normalised numerics and the derivations' item parts.

        Rebuilt (for all items at once) only when the item table changes.
        """
        version = self.features.version
        if version != self._version:
            with self._lock:
                v = self.features.values
                if self.filled:  # the item columns the frame path sees: missing attributes filled
                    v = fill_missing(v.copy(), self.filled, self.features.item_ids)
                have = set(v.columns)
                cat = (
                    np.stack([self._codes(self._item_column(v, c), c) for c in self.item_cat], axis=1)
                    if self.item_cat
                    else None
                )
                num = (
                    np.stack([self._scaled(v[c], c) for c in self.item_num], axis=1)
                    if self.item_num
                    else None
                )
                parts: dict[str, Any] = {}  # the item columns the derivations read, and their parts
                for d in self.derived.values():
                    raw = {c: v[c].to_numpy() for c in d.reads if c in have}
                    parts.update(raw)
                    parts.update(d.item_parts(raw))
                self._arrays = (cat, num, parts)
                self._version = version
        return self._arrays

    def item_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """Every item's (ids, mask), tokenized once: a bundle's texts do not change."""
        if self._item_tokens is None:
            with self._lock:
                if self._item_tokens is None and self.pre.tokenizer is not None:
                    self._item_tokens = self.pre.tokenizer([str(t) for t in np.asarray(self.texts)])
        return cast(tuple[np.ndarray, np.ndarray], self._item_tokens)

    def query_tokens(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The (ids, mask) of the request's normalised query (the query_text input), on ``n`` rows."""
        ids, mask = cast(Any, self.pre.tokenizer)([normalise_query(query)])
        return np.repeat(ids, n, axis=0), np.repeat(mask, n, axis=0)

    def _item_column(self, values: pd.DataFrame, name: str) -> pd.Series:
        return values[name] if name in values else pd.Series(self.features.item_ids)

    def prepare(self) -> None:
        """Build the item arrays now (after a refresh of the item table)."""
        self._item_arrays()

    def _codes(self, col: pd.Series, name: str) -> np.ndarray:
        return (
            col.astype("string").fillna("<na>").map(self.pre.vocab[name]).fillna(UNKNOWN).to_numpy(np.int64)
        )

    def _scaled(self, col: pd.Series, name: str) -> np.ndarray:
        raw = (
            np.asarray(col, dtype=np.float64)
            if isinstance(col, np.ndarray)
            else col.astype("float64").to_numpy()
        )
        x = (raw - self.pre.mean[name]) / self.pre.std[name]
        return np.clip(np.nan_to_num(x, nan=0.0), -10, 10).astype(np.float32)

    def _scalar(self, value, name: str) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            return 0.0
        if np.isnan(x):
            return 0.0
        return float(np.clip((x - self.pre.mean[name]) / self.pre.std[name], -10, 10))

    def cross_arrays(
        self, rows: np.ndarray, lookup: Lookup, query: str, names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The derived inputs (all, or ``names``) for one request's rows: each derivation's
        ``cross`` on the gathered item parts and the request's own values."""
        n = len(rows)
        cols: dict[str, Any] = {k: v[rows] for k, v in self._item_arrays()[2].items()}
        out: dict[str, np.ndarray] = {}
        for name in self.derived if names is None else names:
            d = self.derived[name]
            for r in d.reads:  # what the item parts do not hold: the request's own values, once
                if r not in cols:
                    cols[r] = repeat(query if r == "query" else lookup.user.get(r), n)
            out[name] = d.cross(cols)
        return out

    def inputs(self, rows: np.ndarray, lookup: Lookup, q_vec: np.ndarray, query: str, item_vecs) -> dict:
        """The model's input arrays, as :meth:`Preprocessor.transform` makes them."""
        n = len(rows)
        cat_all, num_all = self._item_arrays()[:2]
        user = lookup.user
        out: dict[str, np.ndarray] = {}
        if self.spec.categorical:
            cols = {c: cat_all[rows, j] for j, c in enumerate(self.item_cat)}
            for c in self.user_cat:
                value = user.get(c)
                key = (
                    "<na>" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
                )
                cols[c] = np.full(n, self.pre.vocab[c].get(key, UNKNOWN), dtype=np.int64)
            out["cat"] = np.stack([cols[c] for c in self.spec.categorical], axis=1)
        if self.spec.numeric:
            cols = {c: num_all[rows, j] for j, c in enumerate(self.item_num)}
            for c in self.user_num:
                cols[c] = np.full(n, self._scalar(user.get(c), c), dtype=np.float32)
            if self.derived:
                crossed = self.cross_arrays(rows, lookup, query)
                for c in self.derived:
                    cols[c] = self._scaled(crossed[c], c)
            out["num"] = np.stack([cols[c] for c in self.spec.numeric], axis=1)
        out["q_emb"] = np.repeat(q_vec[None, :].astype(np.float32), n, axis=0)
        out["i_emb"] = item_vecs
        out["has_query"] = np.full(n, float(bool(query)), dtype=np.float32)
        if self.pre.reads_text:
            out["q_ids"], out["q_mask"] = self.query_tokens(query, n)
            ids, mask = self.item_tokens()
            out["i_ids"], out["i_mask"] = ids[rows], mask[rows]
        hist = np.zeros((1, self.scorer.history_length), dtype=np.int64)
        items = user.get("recent_items")
        if items is not None and not isinstance(items, float) and len(items):
            codes = [self.pre.item_rows.get(i, UNKNOWN) for i in list(items)[: self.scorer.history_length]]
            hist[0, : len(codes)] = codes
        out["hist"] = np.repeat(hist, n, axis=0)
        out["position"] = np.zeros(n, dtype=np.int64)
        out["label"] = np.zeros(n, dtype=np.float32)
        return out

    def occlusion(
        self, arrays: dict[str, np.ndarray], by_group: dict[str, tuple[str, ...]] | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:func:`shoprank.ranking.explain.impacts` on model inputs: blank each group, one forward pass.

        A blanked number is a missing value (0 after scaling, as the preprocessor fills it),
        a blanked category is ``<na>``, the query embedding is zero, the query text empty and
        the history empty: what the frame-level occlusion produces after
        :meth:`Preprocessor.transform`.
        """
        n = len(arrays["has_query"])
        num = {c: j for j, c in enumerate(self.spec.numeric)}
        cat = {c: j for j, c in enumerate(self.spec.categorical)}
        if by_group is None:
            by_group = self.groups
        parts, names = [arrays], []
        for group, cols in by_group.items():
            a = dict(arrays)
            touched = False
            for c in cols:
                if c == self.spec.query_embedding:
                    a["q_emb"], touched = np.zeros_like(arrays["q_emb"]), True
                elif c == self.spec.query_text and "q_ids" in arrays:
                    a["q_ids"], a["q_mask"] = self.query_tokens("", n)
                    touched = True
                elif c == self.spec.history:
                    a["hist"], touched = np.zeros_like(arrays["hist"]), True
                elif c in num:
                    a["num"] = a["num"].copy() if a["num"] is arrays["num"] else a["num"]
                    a["num"][:, num[c]], touched = 0.0, True
                elif c in cat:
                    a["cat"] = a["cat"].copy() if a["cat"] is arrays["cat"] else a["cat"]
                    a["cat"][:, cat[c]], touched = self.pre.vocab[c].get("<na>", UNKNOWN), True
            if touched:
                parts.append(a)
                names.append(group)
        big = {k: np.concatenate([p[k] for p in parts]) for k in arrays}
        out = np.asarray(self.predict(big), dtype=np.float64)
        base = out[:n]
        return base, {g: base - out[(i + 1) * n : (i + 2) * n] for i, g in enumerate(names)}

    @torch.inference_mode()
    def predict(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        batch = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        return torch.sigmoid(self.model(batch, with_position=False)).float().numpy()

    @torch.inference_mode()
    def predict_purchase(self, arrays: dict[str, np.ndarray]) -> np.ndarray | None:
        """P(purchase | click) from the same inputs; None when the champion has no purchase head."""
        if self.model.purchase_mlp is None:
            return None
        batch = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        return torch.sigmoid(self.model.heads(batch)[1]).float().numpy()
