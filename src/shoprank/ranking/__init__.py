"""The online ranking path behind the BentoML service.

- bundle.py: `shoprank package`: the champion and everything it needs -> the BentoML model store
- loader.py: a bundle loaded into what one worker serves with
- catalog.py: the packaged items, their vectors, filters
- features.py: online features (Feast) with a short-lived cache and packaged fallbacks
- refresh.py: the background refresh of the item features
- query_vectors.py: a query's vector from the process cache, the online store or the encoder
- scoring.py: the candidates' features and the champion's scores (fast path or pandas path)
- fastpath.py: the champion's inputs from arrays
- explain.py, explanations.py: the features that drove a score, by occlusion
- rerank.py: diversity and exploration slots for new items
- recommend.py: a feed (no query): the shopper's clicks, popular and new items -> scored like a search
- understand.py: query intent and attributes
- served.py: the log and memory of served responses, and the feedback on them
- responses.py: the JSON answers
- ranker.py: :class:`Ranker`: wires the above; search, recommend, rank, intent, feedback (what HTTP calls)
- requests.py: the request models, with every rule a request must meet
- http.py: the Starlette app (API key, metrics, the search page) mounted by serving/service.py
"""
