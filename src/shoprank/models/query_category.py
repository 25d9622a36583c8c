"""The query's product category, learned from what shoppers clicked.

A linear head (multinomial logistic regression, like the understanding heads) over the
frozen query embedding, fitted on the catalogue category of every item clicked for a
search in the training split (:mod:`shoprank.training.query_category` fits it). It needs
no simulator labels, so an imported log trains it too. Its output is a probability per
full category; a top category's probability is the sum over the full categories under it,
so the two never disagree.

`shoprank understand` writes it beside the intent and attribute heads
(``<paths.models>/understanding/query_category.pkl``) and `shoprank package` ships it into
the bundle; :func:`load_query_category` reads it (None when the step had too few clicks).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from shoprank.artifacts import QUERY_CATEGORY


def top_of(category: str) -> str:
    """The first level of a category path ("Shoes > Boots" -> "Shoes")."""
    return category.split(" > ")[0]


@dataclass
class QueryCategoryHead:
    """Query embeddings (n, dim) -> P(full category), and P(top category) summed from it."""

    model: LogisticRegression | None = None
    classes: list[str] = field(default_factory=list)
    tops: list[str] = field(default_factory=list)
    _top_matrix: np.ndarray | None = None  # (classes, tops): 1 where a class is under a top

    def fit(
        self, x: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None,
        c: float = 10.0, max_iter: int = 400, seed: int = 0,
    ) -> QueryCategoryHead:  # fmt: skip
        self.model = LogisticRegression(max_iter=max_iter, C=c, random_state=seed)
        self.model.fit(x, labels, sample_weight=weights)
        return self.indexed()

    def indexed(self) -> QueryCategoryHead:
        """Name the model's classes and map each to its top category (after a fit)."""
        assert self.model is not None, "fit first"
        self.classes = [str(v) for v in self.model.classes_]
        self.tops = sorted({top_of(v) for v in self.classes})
        top_row = {t: j for j, t in enumerate(self.tops)}
        m = np.zeros((len(self.classes), len(self.tops)), dtype=np.float64)
        for i, v in enumerate(self.classes):
            m[i, top_row[top_of(v)]] = 1.0
        self._top_matrix = m
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, classes) probabilities of the full categories."""
        assert self.model is not None, "fit first"
        return self.model.predict_proba(np.asarray(x, dtype=np.float64))

    def top_proba(self, full: np.ndarray) -> np.ndarray:
        """(n, tops) probabilities of the top categories from :meth:`predict_proba`'s output."""
        assert self._top_matrix is not None, "fit first"
        return full @ self._top_matrix

    def accuracy(self, x: np.ndarray, labels: np.ndarray) -> dict[str, float | int]:
        """Share of rows whose most likely category (and top category) is the clicked one's."""
        if not len(labels):
            return {"rows": 0}
        full = self.predict_proba(x)
        pred = np.asarray(self.classes, dtype=object)[full.argmax(axis=1)]
        top = np.asarray(self.tops, dtype=object)[self.top_proba(full).argmax(axis=1)]
        truth_top = np.array([top_of(str(v)) for v in labels], dtype=object)
        return {
            "accuracy": float(np.mean(pred == labels)),
            "top_accuracy": float(np.mean(top == truth_top)),
            "rows": len(labels),
        }


def save_query_category(head: QueryCategoryHead, folder: Path | str) -> Path:
    path = Path(folder) / QUERY_CATEGORY
    with open(path, "wb") as fh:
        pickle.dump(head, fh)
    return path


def load_query_category(folder: Path | str) -> QueryCategoryHead | None:
    """The head in ``folder`` (the understand step's, or a bundle); None when there is none."""
    path = Path(folder) / QUERY_CATEGORY
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        head = pickle.load(fh)
    if not isinstance(head, QueryCategoryHead):
        raise ValueError(f"{path}: not a query-category head ({type(head).__name__})")
    return head
