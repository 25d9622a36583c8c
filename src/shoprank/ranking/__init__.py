"""The online ranking path behind the BentoML service.

- bundle.py: `shoprank package`: the champion and everything it needs -> the BentoML model store
- features.py: online features (Feast) with a short-lived cache and packaged fallbacks
- rerank.py: diversity and exploration slots for new items
- explain.py: the features that drove a score, by occlusion
- understand.py: query intent and attributes
- ranker.py: :class:`Ranker`: search, rank, intent, feedback (what the HTTP layer calls)
- http.py: the Starlette app (validation, API key, metrics, the search page) mounted by serving/service.py
"""
