"""Feature services: one versioned set of features per model.

A model records the service it was trained on; serving asks the online store for the
same service. Change a service's features by adding a new version, never in place.
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

ctr_model_v1 = FeatureService(
    name="ctr_model_v1",
    features=[item_profile, item_stats, item_text, user_profile, user_stats, user_history, query_text],
    description="BERT-CTR and LightGBM: every feature, text embeddings included.",
    tags={"version": "1"},
)

text_free_v1 = FeatureService(
    name="text_free_v1",
    features=[item_profile, item_stats, user_profile, user_stats, user_history],
    description="The no-text ablation: ctr_model_v1 without the item and query embeddings.",
    tags={"version": "1"},
)
