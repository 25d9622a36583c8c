"""Attribute filling: the catalogue's missing attribute values, predicted from the item's text.

One head per attribute column (colour, material, size, ...) learns the column from the
items whose field is filled (weak supervision: the catalogue labels itself, so an imported
catalogue is filled like a simulated one) and predicts it where the field is empty; a
prediction fills it only at ``understand.fill.min_confidence`` or above.

Each head is a multinomial logistic regression over one of three inputs, chosen per
column on a validation part of the fitting items (``understand.fill.method: auto``):

- ``embedding``: the item's frozen MiniLM embedding of title and description;
- ``words``: which values of the column's known vocabulary (the values of the filled
  items) the lower-cased text names as whole words;
- ``both``: the two side by side.

Accuracy and macro-F1 are measured on known items held out of the fit
(``understand.holdout_share``); the heads that fill are then fitted on every known item.
`shoprank understand` writes the filled table (:data:`FILLED_FILE`: item_id, one column per
attribute, null where not filled) under ``<paths.models>/attributes/``; training,
evaluation and serving write it into the item's empty fields with :func:`fill_missing`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shoprank.artifacts import ATTRIBUTES as FILLED_FILE  # the same file name in the bundle

if TYPE_CHECKING:
    from shoprank.config import Understand

ARTIFACT = "attributes"  # the step's folder under paths.models
REPORT_FILE = "report.json"
METHODS = ("embedding", "words", "both")
VALIDATION_SHARE = 0.25  # of the fitting items: what `auto` picks a head's input on

Filled = dict[str, pd.Series]  # attribute -> its filled value by item id (only the items it fills)
Texts = Sequence[str] | np.ndarray  # each item's title and description, as a list or an object array


# --- applying the filled table: training, evaluation and serving -------------------------------


def filled_of(table: pd.DataFrame) -> Filled:
    """The filled table (item_id plus one column per attribute) as attribute -> value by item id."""
    ids = table["item_id"].astype(str)
    out: Filled = {}
    for column in table.columns:
        if column == "item_id":
            continue
        values = pd.Series(table[column].to_numpy(dtype=object), index=ids.to_numpy())
        out[column] = values[values.notna()]
    return out


def read_filled(path: Path | str) -> Filled | None:
    """:func:`filled_of` of a filled table file; None when there is none (nothing is filled)."""
    return filled_of(pd.read_parquet(path)) if Path(path).is_file() else None


def fill_missing(
    df: pd.DataFrame, filled: Filled | None, item_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """Write each filled value into ``df``'s attribute column where the row's own value is missing.

    Rows are matched by ``item_ids`` (default: ``df["item_id"]``); a value the catalogue has
    is never replaced. Changes ``df`` in place and returns it. Training, evaluation and both
    serving paths call this one function, so a model sees the same values everywhere.
    """
    if not filled:
        return df
    ids = pd.Series(df["item_id"] if item_ids is None else item_ids).astype(str).to_numpy()
    for column, values in filled.items():
        if column not in df.columns or not len(values):
            continue
        current = df[column]
        missing = current.isna().to_numpy()
        if not missing.any():
            continue
        got = pd.Series(ids[missing]).map(values).to_numpy(dtype=object)
        new = current.to_numpy(dtype=object, copy=True)
        new[np.flatnonzero(missing)] = got
        keep = not isinstance(current.dtype, pd.CategoricalDtype)  # a filled value may be a new category
        df[column] = pd.Series(new, index=df.index).astype(current.dtype if keep else object)
    return df


def mention_matrix(texts: Texts, vocab: Sequence[str]) -> np.ndarray:
    """(n, len(vocab)): 1.0 where the lower-cased text names the value as a whole word."""
    out = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    lowered = [t.lower() for t in texts]
    for j, value in enumerate(vocab):
        pattern = re.compile(r"(?<![^\W_])" + re.escape(value.lower()) + r"(?![^\W_])")
        out[:, j] = [1.0 if value and pattern.search(t) else 0.0 for t in lowered]
    return out


@dataclass
class AttributeHead:
    """One attribute column's head: its input (``method``), known vocabulary and classifier."""

    name: str
    method: str
    vocab: list[str]
    model: Any = None  # a fitted scikit-learn LogisticRegression

    def inputs(self, vecs: np.ndarray, texts: Texts) -> np.ndarray:
        if self.method == "embedding":
            return np.asarray(vecs, np.float32)
        words = mention_matrix(texts, self.vocab)
        return words if self.method == "words" else np.hstack([np.asarray(vecs, np.float32), words])

    def fit(self, vecs: np.ndarray, texts: Texts, labels: np.ndarray, s: Understand) -> AttributeHead:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=s.max_iter, C=s.c, random_state=s.seed)
        self.model = model.fit(self.inputs(vecs, texts), labels)
        return self

    def predict(self, vecs: np.ndarray, texts: Texts) -> tuple[np.ndarray, np.ndarray]:
        """The most probable value of each item and its probability (the confidence)."""
        if not len(texts):
            return np.array([], dtype=object), np.array([], dtype=np.float64)
        proba = self.model.predict_proba(self.inputs(vecs, texts))
        classes = np.asarray(self.model.classes_, dtype=object)
        return classes[proba.argmax(axis=1)], proba.max(axis=1)


def fit_head(
    name: str, method: str, vecs: np.ndarray, texts: Texts, labels: np.ndarray, s: Understand
) -> AttributeHead:
    vocab = sorted({str(v) for v in labels})
    return AttributeHead(name, method, vocab).fit(vecs, texts, labels, s)


def scores(head: AttributeHead, vecs: np.ndarray, texts: Texts, labels: np.ndarray, threshold: float) -> dict:
    """Accuracy and macro-F1 of ``head`` on labelled items, and of its confident predictions alone."""
    from sklearn.metrics import accuracy_score, f1_score

    pred, conf = head.predict(vecs, texts)
    sure = conf >= threshold
    return {
        "accuracy": round(float(accuracy_score(labels, pred)), 4),
        "macro_f1": round(float(f1_score(labels, pred, average="macro", zero_division=0)), 4),
        "confident_share": round(float(sure.mean()), 4),  # what would be filled at the threshold
        "confident_accuracy": round(float((pred[sure] == labels[sure]).mean()), 4) if sure.any() else None,
    }


def split_known(known: np.ndarray, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held): a random ``share`` of the known rows is held out of the fit; the rest fits."""
    held = known & (rng.random(len(known)) < share)
    return known & ~held, held


def pick_method(
    name: str, vecs: np.ndarray, texts: np.ndarray, labels: np.ndarray, fit: np.ndarray, s: Understand,
    rng: np.random.Generator,
) -> tuple[str, dict[str, float]]:  # fmt: skip
    """The configured input, or under ``auto`` the one with the best validation macro-F1."""
    if s.fill.method != "auto":
        return s.fill.method, {}
    train, val = split_known(fit, VALIDATION_SHARE, rng)
    if len(set(labels[train])) < 2 or not val.any():
        return "both", {}
    from sklearn.metrics import f1_score

    found = {}
    for method in METHODS:
        head = fit_head(name, method, vecs[train], texts[train], labels[train], s)
        pred, _ = head.predict(vecs[val], texts[val])
        found[method] = round(float(f1_score(labels[val], pred, average="macro", zero_division=0)), 4)
    return max(METHODS, key=lambda m: found[m]), found


def fill_column(
    name: str, vecs: np.ndarray, texts: np.ndarray, column: np.ndarray, s: Understand,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """One attribute column: (its filled values, null where not filled; its report)."""
    known = pd.notna(column)
    missing = int((~known).sum())
    labels = np.array([str(v) if k else "" for v, k in zip(column, known, strict=True)], dtype=object)
    out = np.full(len(column), None, dtype=object)
    fit, held = split_known(known, s.holdout_share, rng)
    if len(set(labels[fit])) < 2 or not held.any():
        return out, {
            "trained": False,
            "reason": "fewer than two known values to learn from",
            "missing": missing,
        }
    method, validation = pick_method(name, vecs, texts, labels, fit, s, rng)
    head = fit_head(name, method, vecs[fit], texts[fit], labels[fit], s)
    held_out = scores(head, vecs[held], texts[held], labels[held], s.fill.min_confidence)
    final = fit_head(name, method, vecs[known], texts[known], labels[known], s)  # what fills
    gaps = np.flatnonzero(~known)
    pred, conf = final.predict(vecs[gaps], texts[gaps])
    sure = conf >= s.fill.min_confidence
    out[gaps[sure]] = pred[sure]
    report = {
        "trained": True,
        "method": method,
        "validation_macro_f1": validation,  # per input, when `auto` chose
        "classes": len(final.vocab),
        "rows": {"fit": int(fit.sum()), "held_out": int(held.sum()), "known": int(known.sum())},
        "held_out": held_out,
        "missing": missing,
        "filled": int(sure.sum()),
        "filled_share": round(float(sure.sum() / missing), 4) if missing else None,
    }
    return out, report


def fill_catalogue(
    item_ids: Sequence[str], vecs: np.ndarray, texts: Texts, columns: Mapping[str, np.ndarray],
    s: Understand,
) -> tuple[pd.DataFrame, dict[str, Any]]:  # fmt: skip
    """Fill each of ``columns`` (aligned with ``item_ids``): (the table of items filled, the report)."""
    rng = np.random.default_rng(s.seed)
    text_arr = np.asarray(list(texts), dtype=object)
    table = pd.DataFrame({"item_id": pd.Series(list(item_ids), dtype=str)})
    report: dict[str, Any] = {}
    for name, column in columns.items():
        values, report[name] = fill_column(name, vecs, text_arr, np.asarray(column, dtype=object), s, rng)
        table[name] = pd.Series(values, dtype="string")
    attrs = [c for c in table.columns if c != "item_id"]
    table = table[table[attrs].notna().any(axis=1)].reset_index(drop=True) if attrs else table.iloc[:0]
    return table, report


# --- the step: part of `shoprank understand` --------------------------------------------------------


def catalogue_columns(
    features_dir: Path, columns: Sequence[str], item_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """Each attribute column's catalogue value per item (latest profile row; null where missing).

    A configured column the catalogue does not have (an imported shop without it) is left out.
    """
    profile = pd.read_parquet(features_dir / "item_profile.parquet")
    columns = [c for c in columns if c in profile.columns]
    latest = profile.sort_values("event_timestamp", kind="stable").drop_duplicates("item_id", keep="last")
    latest = latest.astype({"item_id": str}).set_index("item_id").reindex(list(item_ids))
    return {c: latest[c].astype(object).where(latest[c].notna(), None).to_numpy(object) for c in columns}


def truth_agreement(table: pd.DataFrame, truth_items: Path) -> dict[str, float] | None:
    """On a simulated batch: the share of filled values equal to the simulator's true value."""
    if not truth_items.is_file() or table.empty:
        return None
    truth = pd.read_parquet(truth_items).astype({"item_id": str}).set_index("item_id")
    out = {}
    for c in (c for c in table.columns if c in truth.columns and c != "item_id"):
        got = table[["item_id", c]].dropna()
        if len(got):
            same = truth[c].reindex(got["item_id"]).astype(str).to_numpy() == got[c].astype(str).to_numpy()
            out[c] = round(float(same.mean()), 4)
    return out


def run_fill(features_dir: Path, batch_dir: Path, models_dir: Path, truth_dir: Path, s: Understand) -> dict:
    """Fit the heads on the catalogue's filled fields and write ``<models>/attributes/`` (table, report)."""
    from shoprank.inputs.items import item_embeddings
    from shoprank.inputs.texts import batch_texts

    item_ids, vecs = item_embeddings(features_dir)
    texts = batch_texts(batch_dir).reindex(item_ids).fillna("").tolist()
    columns = catalogue_columns(features_dir, s.fill.columns, item_ids)
    table, report = fill_catalogue(item_ids, np.asarray(vecs), texts, columns, s)
    for c in s.fill.columns:
        if c not in columns:
            report[c] = {"trained": False, "reason": "not a column of the catalogue's item profile"}
    out = models_dir / ARTIFACT
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    table.to_parquet(out / FILLED_FILE, index=False)
    full = {
        "items": len(item_ids),
        "min_confidence": s.fill.min_confidence,
        "columns": report,
        "truth_agreement": truth_agreement(table, truth_dir / "items.parquet"),  # simulated batches only
    }
    (out / REPORT_FILE).write_text(json.dumps(full, indent=2) + "\n")
    return full


def pipeline_filled(models_dir: Path | str) -> Filled | None:
    """The filled table `shoprank understand` wrote, as training, evaluation and drift read it."""
    return read_filled(Path(models_dir) / ARTIFACT / FILLED_FILE)
