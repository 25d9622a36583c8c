"""Query intent recognition and product attribute extraction on the BERT encoder.

Both are linear heads (multinomial logistic regression) over frozen MiniLM sentence
embeddings, trained on the simulator's labels (truth/requests.intent, truth/items
attributes) or on any labelled data in the same shape. Linear probes are the right
size here: the labels are few and the encoder already separates them; they train in
seconds on CPU and serve in microseconds.

:func:`run_understand` is the pipeline step `shoprank understand` (the dvc.yaml stage and
the Airflow task of the same name): it fits the heads on the current features' embeddings
and writes ``<paths.models>/understanding/`` (the pickled heads and ``report.json``) and
``<paths.metrics>/understand.json`` (held-out scores). `shoprank package` ships that
artifact through :func:`load_understanding`.
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from shoprank.artifacts import UNDERSTANDING

if TYPE_CHECKING:
    from shoprank.config import Params, Understand

ATTRIBUTES = ("product_type", "colour", "material")
ARTIFACT = "understanding"  # the step's folder under paths.models
MODEL_FILE = UNDERSTANDING  # the same file name in the bundle
REPORT_FILE = "report.json"
METRICS_FILE = "understand.json"  # under paths.metrics


@dataclass
class TextClassifier:
    """One linear head: embeddings (n, dim) -> one of ``classes``."""

    name: str
    model: LogisticRegression | None = None

    def fit(
        self, x: np.ndarray, labels: np.ndarray, seed: int = 0, c: float = 10.0, max_iter: int = 400
    ) -> TextClassifier:
        self.model = LogisticRegression(max_iter=max_iter, C=c, random_state=seed).fit(x, labels)
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
            "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
        }


def _known(labels: np.ndarray) -> np.ndarray:
    return np.array([v is not None and v == v for v in labels], dtype=bool)  # drop None / NaN


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
        **solver: Any,
    ) -> QueryUnderstanding:
        """``solver``: ``seed``, ``c``, ``max_iter`` of every head (:meth:`TextClassifier.fit`)."""
        self.intent.fit(query_vecs, intents, **solver)
        for attr, labels in item_labels.items():
            known = _known(labels)
            self.attributes[attr] = TextClassifier(attr).fit(
                item_vecs[known], labels[known].astype(str), **solver
            )
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
            known = _known(labels)
            out[attr] = clf.score(item_vecs[known], labels[known].astype(str))
        return out

    def query_intent(self, query_vecs: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """(n, n_intents) probabilities and the intent names (model features, service output)."""
        return self.intent.predict_proba(query_vecs), self.intent.classes

    def item_attributes(self, item_vecs: np.ndarray) -> dict[str, np.ndarray]:
        """Predicted value of each attribute per item (fills gaps in the catalog's attributes)."""
        return {attr: clf.predict(item_vecs) for attr, clf in self.attributes.items()}


# --- the `understand` step ---------------------------------------------------------------------


@dataclass
class Labelled:
    """Embeddings with their labels: one row per labelled search request, one per catalog item."""

    query_vecs: np.ndarray
    intents: np.ndarray
    queries: np.ndarray  # normalised query text per row: the holdout splits by text
    item_vecs: np.ndarray
    item_labels: dict[str, np.ndarray]

    def take(self, queries: np.ndarray, items: np.ndarray) -> Labelled:
        labels = {a: v[items] for a, v in self.item_labels.items()}
        return Labelled(
            self.query_vecs[queries],
            self.intents[queries],
            self.queries[queries],
            self.item_vecs[items],
            labels,
        )

    def fit(self, s: Understand) -> QueryUnderstanding:
        # an attribute needs two known values among the rows it is fitted on
        labels = {a: v for a, v in self.item_labels.items() if len(set(v[_known(v)])) >= 2}
        return QueryUnderstanding().fit(
            self.query_vecs, self.intents, self.item_vecs, labels, seed=s.seed, c=s.c, max_iter=s.max_iter
        )


def labelled_data(truth_dir: Path, features_dir: Path) -> Labelled | str:
    """The simulator's intent and attribute labels on the features' embeddings, or why there are none."""
    import pandas as pd

    from shoprank.features.queries import normalise_query
    from shoprank.inputs.frame import read_frame
    from shoprank.inputs.items import item_embeddings

    if not (features_dir / "item_text.parquet").is_file():
        raise FileNotFoundError(f"{features_dir}/item_text.parquet missing (run `shoprank features`)")
    req_path, items_path = truth_dir / "requests.parquet", truth_dir / "items.parquet"
    qt_path = features_dir / "query_text.parquet"
    if not (req_path.is_file() and items_path.is_file() and qt_path.is_file()):
        return "no labelled queries (simulator truth) in this batch"
    req = pd.read_parquet(req_path, columns=["query", "intent"])
    req = req[req["query"].fillna("") != ""]
    req["query_text"] = [normalise_query(q) for q in req["query"]]
    qt = read_frame(qt_path, ("query_embedding",))
    pos = pd.Series(np.arange(len(qt.df)), index=qt.df["query_text"].to_numpy())
    pos = pos[~pos.index.duplicated()]
    req = req[req["query_text"].isin(pos.index)]
    if req["intent"].nunique() < 2:
        return "fewer than two intents among the labelled queries"
    q_vecs = np.asarray(qt.vectors["query_embedding"][pos[req["query_text"]].to_numpy()])
    item_ids, item_vecs = item_embeddings(features_dir)
    truth_items = pd.read_parquet(items_path).astype({"item_id": str}).set_index("item_id")
    row = {i: r for r, i in enumerate(item_ids)}
    keep = [i for i in truth_items.index if i in row]
    labels = {a: truth_items.loc[keep, a].to_numpy(dtype=object) for a in ATTRIBUTES if a in truth_items}
    vecs = np.asarray(item_vecs[[row[i] for i in keep]])
    intents = req["intent"].astype(str).to_numpy()
    return Labelled(q_vecs, intents, req["query_text"].to_numpy(), vecs, labels)


def holdout_scores(data: Labelled, s: Understand) -> dict[str, dict[str, float]] | None:
    """Scores of heads fitted without a random ``holdout_share`` of the query texts and of the items.

    Queries are held out by text, so the intent score is on queries never seen in the fit.
    None when the rest has fewer than two intents (too few labels to fit).
    """
    rng = np.random.default_rng(s.seed)
    texts = np.unique(data.queries)
    held_texts = texts[rng.random(len(texts)) < s.holdout_share]
    held_q = np.isin(data.queries, held_texts)
    held_i = rng.random(len(data.item_vecs)) < s.holdout_share
    fit_part = data.take(~held_q, ~held_i)
    if len(set(fit_part.intents)) < 2 or not held_q.any():
        return None
    test = data.take(held_q, held_i)
    model = fit_part.fit(s)
    labels = {a: test.item_labels[a] for a in model.attributes}
    return model.report(test.query_vecs, test.intents, test.item_vecs, labels)


def run_understand(params: Params) -> dict[str, Any]:
    """`shoprank understand`: fit the heads on all labelled data and write the artifact and its scores.

    Without labels (logs imported without the simulator's truth) the artifact records why and
    holds no heads: `package` then ships without them and the `intent` endpoint says so.
    """
    s = params.understand
    out = Path(params.paths.models) / ARTIFACT
    data = labelled_data(Path(params.paths.truth), Path(params.paths.features))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    report: dict[str, Any]
    if isinstance(data, str):
        report = {"trained": False, "reason": data, "scores": None}
    else:
        model = data.fit(s)
        with open(out / MODEL_FILE, "wb") as fh:
            pickle.dump(model, fh)
        report = {
            "trained": True,
            "scores": holdout_scores(data, s),  # held out; the shipped heads are fitted on everything
            "rows": {"queries": len(data.intents), "items": len(data.item_vecs)},
            "classes": {"intent": model.intent.classes} | {a: h.classes for a, h in model.attributes.items()},
            "embedding_dim": int(data.item_vecs.shape[1]),
            "settings": s.model_dump(),
        }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    report["attributes"] = fill_attributes(params)  # needs no labels: the catalogue's own fields
    metrics = Path(params.paths.metrics) / METRICS_FILE
    metrics.parent.mkdir(parents=True, exist_ok=True)
    scores = report["scores"] or {"trained": report["trained"]}
    metrics.write_text(
        json.dumps(scores | {"filled": filling_metrics(report["attributes"])}, indent=2) + "\n"
    )
    return report


def fill_attributes(params: Params) -> dict[str, Any]:
    """The attribute-filling part of the step (:mod:`shoprank.models.attributes`)."""
    from shoprank.models.attributes import run_fill
    from shoprank.quality import current_batch

    paths = params.paths
    return run_fill(
        Path(paths.features),
        current_batch(paths.validated),
        Path(paths.models),
        Path(paths.truth),
        params.understand,
    )


def filling_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """Per filled column: held-out accuracy and macro-F1, the input chosen and the share filled."""
    out: dict[str, Any] = {}
    for column, r in report["columns"].items():
        if not r["trained"]:
            out[column] = {"trained": False}
            continue
        held = r["held_out"]
        out[column] = {
            "method": r["method"],
            "accuracy": held["accuracy"],
            "macro_f1": held["macro_f1"],
            "confident_accuracy": held["confident_accuracy"],  # held-out items at the threshold
            "missing": r["missing"],
            "filled_share": r["filled_share"],
        }
    return out


def load_understanding(models_dir: Path | str) -> tuple[QueryUnderstanding | None, dict[str, Any]]:
    """The heads written by `shoprank understand` and their report; (None, report) when it had no labels."""
    folder = Path(models_dir) / ARTIFACT
    if not (folder / REPORT_FILE).is_file():
        raise FileNotFoundError(
            f"{folder}/{REPORT_FILE}: no query-understanding heads (run `shoprank understand`)"
        )
    report = json.loads((folder / REPORT_FILE).read_text())
    if not report.get("trained"):
        return None, report
    with open(folder / MODEL_FILE, "rb") as fh:
        model = pickle.load(fh)
    if not isinstance(model, QueryUnderstanding):
        raise ValueError(f"{folder / MODEL_FILE}: not query-understanding heads ({type(model).__name__})")
    return model, report
