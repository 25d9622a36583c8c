"""Feature services: one versioned set of features per model, built from the inputs declaration.

A model records the service it was trained on; serving asks the online store for the
same service. A service holds the views whose fields its candidates read
(:func:`shoprank.inputs.declare.views`); change a service's features by adding a new
version, never in place. The names are shoprank's (:mod:`shoprank.artifacts`): training,
evaluation and serving ask for the services by those names.
"""

import feature_views
from feast import FeatureService

from shoprank.artifacts import FEATURE_SERVICE, TEXT_FREE_SERVICE
from shoprank.inputs.declare import views


def _service(name: str, candidates: list[str], description: str) -> FeatureService:
    return FeatureService(
        name=name,
        features=[getattr(feature_views, v) for v in views(candidates)],
        description=description,
        tags={"version": name.rsplit("_v", 1)[1]},
    )


ctr_model_v1 = _service(
    FEATURE_SERVICE, ["bert_ctr", "no_text", "lightgbm"], "BERT-CTR and LightGBM: every input, text included."
)
text_free_v1 = _service(TEXT_FREE_SERVICE, ["no_text"], "The no-text ablation: no item or query embeddings.")
