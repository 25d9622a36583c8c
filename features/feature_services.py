"""Feature services: one versioned set of features per model.

A model records the service it was trained on; serving asks the online store for the
same service. Change a service's features by adding a new version, never in place.
The names are shoprank's (:mod:`shoprank.artifacts`): training, evaluation and serving
ask for the services by those names.
"""

from feast import FeatureService
from feature_views import (
    item_profile,
    item_stats,
    item_text,
    query_text,
    user_history,
    user_profile,
    user_stats,
)

from shoprank.artifacts import FEATURE_SERVICE, TEXT_FREE_SERVICE

ctr_model_v1 = FeatureService(
    name=FEATURE_SERVICE,
    features=[item_profile, item_stats, item_text, user_profile, user_stats, user_history, query_text],
    description="BERT-CTR and LightGBM: every feature, text embeddings included.",
    tags={"version": "1"},
)

text_free_v1 = FeatureService(
    name=TEXT_FREE_SERVICE,
    features=[item_profile, item_stats, user_profile, user_stats, user_history],
    description=f"The no-text ablation: {FEATURE_SERVICE} without the item and query embeddings.",
    tags={"version": "1"},
)
