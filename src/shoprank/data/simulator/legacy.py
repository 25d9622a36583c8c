"""The legacy search engine whose logs the simulator writes.

Retrieval mixes a BM25 title match, a query-category mapping and popular items, as
engines built before language models did. The logging policy orders candidates by
lexical score plus popularity with Gumbel noise (a Plackett-Luce policy), so every
candidate has a non-zero chance at every position; the logged propensity of an item
at its position is estimated by Monte Carlo draws of that same policy.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import sparse

TOKEN = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset({
    "a", "an", "and", "the", "for", "of", "in", "on", "to", "with", "by", "at", "from", "is", "are",
    "i", "do", "what", "how", "vs", "my", "new", "best", "top", "under", "size", "need",
})  # fmt: skip


def tokenize(text: str) -> list[str]:
    return [t for t in TOKEN.findall(text.lower()) if t not in STOPWORDS]


class LexicalIndex:
    """BM25 weights of item titles as a sparse (n_items, vocab) matrix."""

    def __init__(self, titles: list[str], k1: float = 1.2, b: float = 0.75):
        self.vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, title in enumerate(titles):
            for tok in tokenize(title):
                rows.append(i)
                cols.append(self.vocab.setdefault(tok, len(self.vocab)))
        tf = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(titles), len(self.vocab)))
        tf.sum_duplicates()
        length = np.asarray(tf.sum(axis=1)).ravel()
        df = np.bincount(tf.indices, minlength=len(self.vocab))
        idf = np.log(1 + (len(titles) - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * length / max(length.mean(), 1e-9))
        tf = tf.tocoo()
        w = idf[tf.col] * tf.data * (k1 + 1) / (tf.data + norm[tf.row])
        self.weights = sparse.csr_matrix((w, (tf.row, tf.col)), shape=tf.shape)

    def query_matrix(self, queries: list[str]) -> sparse.csr_matrix:
        rows, cols = [], []
        for q, text in enumerate(queries):
            for tok in set(tokenize(text)):
                if tok in self.vocab:
                    rows.append(q)
                    cols.append(self.vocab[tok])
        return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(queries), len(self.vocab)))

    def top_items(self, q: sparse.csr_matrix, k: int, chunk: int = 1024) -> np.ndarray:
        """(n_queries, k) best-matching items per query, -1 where fewer than k match."""
        out = np.full((q.shape[0], k), -1, dtype=np.int64)
        wt = self.weights.T.tocsc()
        for lo in range(0, q.shape[0], chunk):
            scores = (q[lo : lo + chunk] @ wt).tocsr()
            for r in range(scores.shape[0]):
                s, idx = (
                    scores.data[scores.indptr[r] : scores.indptr[r + 1]],
                    scores.indices[scores.indptr[r] : scores.indptr[r + 1]],
                )
                if len(s) > k:
                    keep = np.argpartition(-s, k)[:k]
                    s, idx = s[keep], idx[keep]
                order = np.lexsort((idx, -s))  # ties by item number: deterministic
                out[lo + r, : len(order)] = idx[order]
        return out

    def pair_scores(self, q: sparse.csr_matrix, query_of: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Score of each (query_of[j], items[j]) pair; arrays of the same shape."""
        flat_q, flat_i = query_of.ravel(), items.ravel()
        scores = np.asarray(q[flat_q].multiply(self.weights[flat_i]).sum(axis=1)).ravel()
        return scores.reshape(items.shape)


def sample_groups(group_of_item: np.ndarray, n_groups: int):
    """Return a sampler drawing uniform random items from given groups, vectorised."""
    order = np.argsort(group_of_item, kind="stable")
    counts = np.bincount(group_of_item, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def draw(groups: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        c = counts[groups][:, None]
        pick = starts[groups][:, None] + (rng.random((len(groups), k)) * c).astype(np.int64)
        return np.where(c > 0, order[np.minimum(pick, len(order) - 1)], -1)

    return draw


def first_unique_valid(raw: np.ndarray, invalid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first ``k`` distinct valid entries of ``raw`` in column order.

    Returns (chosen (rows, k), ok (rows,)) where ok is False for rows with fewer.
    """
    rows, cols = raw.shape
    srt = np.argsort(raw, axis=1, kind="stable")
    sorted_raw = np.take_along_axis(raw, srt, axis=1)
    dup_sorted = np.zeros_like(invalid)
    dup_sorted[:, 1:] = sorted_raw[:, 1:] == sorted_raw[:, :-1]  # later copies of a value
    dup = np.zeros_like(invalid)
    np.put_along_axis(dup, srt, dup_sorted, axis=1)
    bad = invalid | dup
    key = bad * cols + np.arange(cols)[None, :]
    take = np.argsort(key, axis=1, kind="stable")[:, :k]
    ok = (~bad).sum(axis=1) >= k
    return np.take_along_axis(raw, take, axis=1), ok


def plackett_luce(scores: np.ndarray, temperature: float, page: int, rng: np.random.Generator) -> np.ndarray:
    """One ranking per row: column indices of the top ``page`` under Gumbel noise."""
    noisy = scores + temperature * rng.gumbel(size=scores.shape)
    top = np.argpartition(-noisy, page - 1, axis=-1)[..., :page]
    order = np.argsort(-np.take_along_axis(noisy, top, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(top, order, axis=-1)


def propensities(
    scores: np.ndarray, shown: np.ndarray, temperature: float, samples: int, rng: np.random.Generator
) -> np.ndarray:
    """P(logged item at its logged position) under the policy, by Monte Carlo.

    ``shown`` (rows, page) is the logged draw; it is itself a draw of the policy, so it
    counts as one of the ``samples + 1`` and no estimate is ever zero.
    """
    page = shown.shape[1]
    draws = plackett_luce(np.repeat(scores[:, None, :], samples, axis=1), temperature, page, rng)
    hits = (draws == shown[:, None, :]).sum(axis=1)
    return (hits + 1) / (samples + 1)
