"""Hybrid retrieval: lexical BM25 (bm25s) and embedding nearest neighbours (faiss), fused.

Both indexes cover the same item rows (row i is ``item_ids[i]``). A query retrieves the
top ``n`` of each, restricted by an optional boolean mask (filters), and the two lists
are fused by reciprocal rank (RRF), which needs no score calibration between the two.
Item vectors are unit-norm text embeddings, so inner product is cosine similarity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

RRF_K = 60.0  # the usual reciprocal-rank-fusion constant


def item_document(catalog: pd.DataFrame) -> list[str]:
    """The text BM25 indexes per item: title, description, category and brand."""
    parts = [catalog[c].astype("string").fillna("") for c in ("title", "description", "category", "brand")]
    return (parts[0] + " " + parts[1] + " " + parts[2] + " " + parts[3]).tolist()


@dataclass
class Retrieved:
    rows: np.ndarray  # item rows, best first
    score: np.ndarray  # fused RRF score
    bm25: np.ndarray  # BM25 score (0 when only the embedding side found it)
    cosine: np.ndarray  # cosine similarity of query and item embeddings


class HybridRetriever:
    def __init__(self, bm25, index, vectors: np.ndarray, listed: np.ndarray | None = None):
        self.bm25 = bm25
        self.index = index
        self.vectors = vectors
        # rows that may be retrieved (None: all); a delisted item keeps its row but is never found
        self.listed = listed

    def within(self, mask: np.ndarray | None) -> np.ndarray | None:
        """``mask`` restricted to the listed rows (None: every row qualifies)."""
        if self.listed is None:
            return mask
        return self.listed if mask is None else mask & self.listed

    @property
    def size(self) -> int:
        return len(self.vectors)

    @classmethod
    def build(cls, documents: list[str], vectors: np.ndarray) -> HybridRetriever:
        import bm25s
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        bm25 = bm25s.BM25()
        bm25.index(bm25s.tokenize(documents, stopwords="en", show_progress=False), show_progress=False)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(bm25, index, vectors)

    def save(self, folder: Path | str) -> None:
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.bm25.save(str(folder / "bm25"))
        faiss.write_index(self.index, str(folder / "items.faiss"))
        np.save(folder / "vectors.npy", self.vectors)
        (folder / "retrieval.json").write_text(json.dumps({"items": self.size, "fusion": "rrf", "k": RRF_K}))

    @classmethod
    def load(cls, folder: Path | str) -> HybridRetriever:
        import bm25s
        import faiss

        folder = Path(folder)
        bm25 = bm25s.BM25.load(str(folder / "bm25"))
        index = faiss.read_index(str(folder / "items.faiss"))
        return cls(bm25, index, np.load(folder / "vectors.npy"))

    def lexical(self, query: str, n: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, BM25 scores) of the top ``n`` items with a positive score."""
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        if not tokens:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = self.bm25.get_scores(tokens)
        mask = self.within(mask)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        keep = scores[top] > 0
        return top[keep].astype(np.int64), scores[top][keep].astype(np.float32)

    def semantic(
        self, vector: np.ndarray, n: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine) of the ``n`` nearest items (inside ``mask`` when given)."""
        rows, cosine = self.nearest(np.asarray(vector).reshape(1, -1), n, mask)
        keep = rows[0] >= 0
        return rows[0][keep], cosine[0][keep]

    def nearest(
        self, vectors: np.ndarray, n: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine), each (len(vectors), n): the ``n`` nearest items of each vector, in one
        search (inside ``mask`` when given); row -1 where fewer items qualify."""
        import faiss

        q = np.ascontiguousarray(vectors, dtype=np.float32)
        params = None
        mask = self.within(mask)
        if mask is not None:
            allowed = np.flatnonzero(mask).astype(np.int64)
            if len(allowed) == 0:
                return np.full((len(q), 0), -1, np.int64), np.zeros((len(q), 0), np.float32)
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))  # type: ignore[call-arg]
            n = min(n, len(allowed))
        n = min(n, self.size)
        dist, rows = self.index.search(q, n, params=params)
        return rows.astype(np.int64), dist.astype(np.float32)

    def retrieve(self, query: str, vector: np.ndarray, n: int, mask: np.ndarray | None = None) -> Retrieved:
        """The fused top ``n`` of BM25 and nearest neighbours (each side asked for ``n``)."""
        lex_rows, lex_scores = self.lexical(query, n, mask)
        sem_rows, _ = self.semantic(vector, n, mask)
        fused: dict[int, float] = {}
        for rows in (lex_rows, sem_rows):
            for rank, r in enumerate(rows.tolist()):
                fused[r] = fused.get(r, 0.0) + 1.0 / (RRF_K + rank + 1)
        if not fused:
            empty = np.zeros(0, np.float32)
            return Retrieved(np.zeros(0, np.int64), empty, empty, empty)
        rows = np.fromiter(fused, dtype=np.int64)
        score = np.fromiter(fused.values(), dtype=np.float32)
        order = np.argsort(-score, kind="stable")[:n]
        rows, score = rows[order], score[order]
        bm25 = np.zeros(len(rows), np.float32)
        pos = {r: i for i, r in enumerate(lex_rows.tolist())}
        for i, r in enumerate(rows.tolist()):
            if r in pos:
                bm25[i] = lex_scores[pos[r]]
        cosine = self.vectors[rows] @ np.asarray(vector, np.float32).reshape(-1)
        return Retrieved(rows, score, bm25, cosine.astype(np.float32))
