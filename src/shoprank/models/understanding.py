"""Query intent recognition and product attribute extraction on the BERT encoder.

Both are linear heads (multinomial logistic regression) over frozen MiniLM sentence
embeddings, trained on the simulator's labels (truth/requests.intent, truth/items
attributes) or on any labelled data in the same shape. Linear probes are the right
size here: the labels are few and the encoder already separates them; they train in
seconds on CPU and serve in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

ATTRIBUTES = ("product_type", "colour", "material")


@dataclass
class TextClassifier:
    """One linear head: embeddings (n, dim) -> one of ``classes``."""

    name: str
    model: LogisticRegression | None = None

    def fit(self, x: np.ndarray, labels: np.ndarray, seed: int = 0) -> TextClassifier:
        self.model = LogisticRegression(max_iter=400, C=10.0, random_state=seed).fit(x, labels)
        return self

    @property
    def classes(self) -> list[str]:
        assert self.model is not None, "fit first"
        return [str(c) for c in self.model.classes_]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        assert self.model is not None, "fit first"
        return self.model.predict_proba(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.predict_proba(x).argmax(axis=1)]

    def score(self, x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        pred = self.predict(x)
        return {
            "accuracy": float(accuracy_score(labels, pred)),
            "macro_f1": float(f1_score(labels, pred, average="macro")),
        }


@dataclass
class QueryUnderstanding:
    """Intent of a query and the attributes of a product, from their text embeddings."""

    intent: TextClassifier = field(default_factory=lambda: TextClassifier("intent"))
    attributes: dict[str, TextClassifier] = field(default_factory=dict)

    def fit(
        self,
        query_vecs: np.ndarray,
        intents: np.ndarray,
        item_vecs: np.ndarray,
        item_labels: dict[str, np.ndarray],
    ) -> QueryUnderstanding:
        self.intent.fit(query_vecs, intents)
        for attr, labels in item_labels.items():
            known = np.array([v is not None and v == v for v in labels])  # drop None / NaN
            self.attributes[attr] = TextClassifier(attr).fit(item_vecs[known], labels[known].astype(str))
        return self

    def report(
        self,
        query_vecs: np.ndarray,
        intents: np.ndarray,
        item_vecs: np.ndarray,
        item_labels: dict[str, np.ndarray],
    ) -> dict[str, dict[str, float]]:
        out = {"intent": self.intent.score(query_vecs, intents)}
        for attr, clf in self.attributes.items():
            labels = item_labels[attr]
            known = np.array([v is not None and v == v for v in labels])
            out[attr] = clf.score(item_vecs[known], labels[known].astype(str))
        return out

    def query_intent(self, query_vecs: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """(n, n_intents) probabilities and the intent names (model features, service output)."""
        return self.intent.predict_proba(query_vecs), self.intent.classes

    def item_attributes(self, item_vecs: np.ndarray) -> dict[str, np.ndarray]:
        """Predicted value of each attribute per item (fills gaps in the catalog's attributes)."""
        return {attr: clf.predict(item_vecs) for attr, clf in self.attributes.items()}
