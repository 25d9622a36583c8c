"""Lexical match of a query against each item's words: BM25 and the share of query words found.

The item's words are its title, description and attribute values (brand, colour, material,
size): :func:`item_words` builds them from any table with those columns, the validated
batch's (:func:`batch_items`, what training and evaluation read) or the served catalog's,
so both sides index the same text. A :class:`Lexicon` holds each item's term counts and
the collection's document frequencies; scoring a query against a few candidate items is
a handful of dictionary look-ups per item, cheap enough for every request.

BM25 is the Lucene variant the retrieval index (bm25s) computes, with its defaults
``k1 = 1.5`` and ``b = 0.75``; a word repeated in the query counts once.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

K1, B = 1.5, 0.75
WORD_COLUMNS = ("title", "description", "brand", "colour", "material", "size")
WORD = re.compile(r"[a-z0-9]+")
# common English words that say nothing about a product (a short list: "for", "with", "the")
# fmt: off
STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "i", "if",
    "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "so", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "what", "when",
    "where", "which", "who", "will", "with", "you", "your",
))
# fmt: on


@lru_cache(maxsize=65536)
def words(text: str) -> tuple[str, ...]:
    """Lower-cased alphanumeric words of ``text`` without stop words, in order."""
    return tuple(w for w in WORD.findall(text.lower()) if w not in STOPWORDS)


def item_words(items: pd.DataFrame) -> list[str]:
    """Each row's text for lexical matching: its title, description and attribute values."""
    parts = [items[c].astype("string").fillna("") for c in WORD_COLUMNS if c in items]
    if not parts:
        return [""] * len(items)
    text = parts[0]
    for p in parts[1:]:
        text = text + " " + p
    return text.tolist()


def batch_items(features_dir: Path | str, batch_dir: Path | str) -> pd.DataFrame:
    """The items as the served catalog has them: the batch's titles and descriptions, and each
    item's latest profile (brand and the attributes parsed from the catalog's JSON)."""
    cat = pd.read_parquet(Path(batch_dir) / "catalog.parquet", columns=["item_id", "title", "description"])
    profile = pd.read_parquet(Path(features_dir) / "item_profile.parquet")
    keep = [c for c in ("item_id", "event_timestamp", *WORD_COLUMNS) if c in profile]
    profile = (
        profile[keep].sort_values("event_timestamp", kind="stable").drop_duplicates("item_id", keep="last")
    )
    profile = profile.drop(columns=["event_timestamp"]).astype({"item_id": str})
    return cat.astype({"item_id": str}).merge(profile, on="item_id", how="left")


@dataclass(frozen=True)
class Lexicon:
    """Term counts of every item and the collection's statistics, for BM25 and word overlap."""

    row_of: dict[str, int]  # item id -> its row
    counts: list[dict[str, int]]  # per row: word -> count
    length: np.ndarray  # words per row
    doc_freq: dict[str, int]  # word -> rows holding it
    mean_length: float

    @classmethod
    def build(cls, item_ids: list[str] | np.ndarray, texts: list[str]) -> Lexicon:
        counts = [dict(Counter(words(t))) for t in texts]
        length = np.array([sum(c.values()) for c in counts], dtype=np.float64)
        doc_freq: Counter[str] = Counter()
        for c in counts:
            doc_freq.update(c.keys())
        mean = float(length.mean()) if len(length) and length.mean() > 0 else 1.0
        row_of = {str(i): r for r, i in enumerate(item_ids)}
        return cls(row_of, counts, length, dict(doc_freq), mean)

    @classmethod
    def of(cls, items: pd.DataFrame) -> Lexicon:
        """The lexicon of a table with ``item_id`` and the word columns (:func:`item_words`)."""
        return cls.build(items["item_id"].astype(str).tolist(), item_words(items))

    def __len__(self) -> int:
        return len(self.counts)

    def idf(self, word: str) -> float:
        n, df = len(self.counts), self.doc_freq.get(word, 0)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def query_terms(self, query: str) -> tuple[tuple[str, float], ...]:
        """The query's distinct words with their inverse document frequencies."""
        return tuple((w, self.idf(w)) for w in dict.fromkeys(words(query)))

    def bm25(self, terms: tuple[tuple[str, float], ...], item_id: str) -> float:
        """BM25 of the query ``terms`` in the item's words; NaN for an item the lexicon lacks."""
        r = self.row_of.get(item_id)
        if r is None:
            return float("nan")
        counts, norm = self.counts[r], K1 * (1.0 - B + B * self.length[r] / self.mean_length)
        score = 0.0
        for w, idf in terms:
            tf = counts.get(w, 0)
            if tf:
                score += idf * tf * (K1 + 1.0) / (tf + norm)
        return score

    def overlap(self, terms: tuple[tuple[str, float], ...], item_id: str) -> float:
        """Share of the query's distinct words found among the item's; NaN without either."""
        r = self.row_of.get(item_id)
        if r is None or not terms:
            return float("nan")
        counts = self.counts[r]
        return sum(1 for w, _ in terms if w in counts) / len(terms)
