"""Candidate retrieval for the service: BM25 over product text plus nearest neighbours of embeddings.

- :class:`HybridRetriever` (hybrid.py): build from the item table, save, load, retrieve
"""

from shoprank.retrieval.hybrid import HybridRetriever, item_document

__all__ = ["HybridRetriever", "item_document"]
