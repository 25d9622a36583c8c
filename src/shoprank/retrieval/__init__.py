"""Candidate retrieval for the service: search (BM25 plus embedding nearest neighbours) and feeds.

- :class:`HybridRetriever` (hybrid.py): a query's candidates; build from the item table, save, load, retrieve
- history.py: a feed's candidates (no query) from a shopper's clicks, popular and new items
- clicks.py: the feeds' click tables (co-clicked items, recent clicks), computed at `shoprank package`
"""

from shoprank.retrieval.hybrid import HybridRetriever, item_document

__all__ = ["HybridRetriever", "item_document"]
