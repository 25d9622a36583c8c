"""Intent recognition and attribute extraction on the real MiniLM weights (tiny profile)."""

from __future__ import annotations

import numpy as np
import pytest

from shoprank.models.understanding import QueryUnderstanding

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data(tiny_sim):
    from shoprank.text import TextEncoder

    enc = TextEncoder.load()
    req = tiny_sim.truth["requests"]
    search = req[req["query"] != ""].drop_duplicates("query")  # held-out queries are unseen texts
    rng = np.random.default_rng(0)
    q_train = rng.random(len(search)) < 0.7
    items = tiny_sim.truth["items"].merge(tiny_sim.tables["catalog"][["item_id", "title", "description"]])
    i_train = rng.random(len(items)) < 0.7
    qv = enc.encode(search["query"].tolist())
    iv = enc.encode((items["title"] + ". " + items["description"]).tolist())
    labels = {a: items[a].to_numpy(dtype=object) for a in ("product_type", "colour", "material")}
    return search["intent"].to_numpy(), qv, q_train, labels, iv, i_train


def test_intent_and_attributes_are_learned_from_text(data):
    intents, qv, q_train, labels, iv, i_train = data
    qu = QueryUnderstanding().fit(
        qv[q_train], intents[q_train], iv[i_train], {k: v[i_train] for k, v in labels.items()}
    )
    report = qu.report(
        qv[~q_train], intents[~q_train], iv[~i_train], {k: v[~i_train] for k, v in labels.items()}
    )
    # five intents: chance is ~0.2 accuracy; the encoder separates 'cheap ...' from 'how to ...'
    assert report["intent"]["accuracy"] > 0.8 and report["intent"]["macro_f1"] > 0.75
    assert report["product_type"]["accuracy"] > 0.8  # 24 types, chance ~0.04
    assert report["colour"]["accuracy"] > 0.5
    probs, names = qu.query_intent(qv[:3])
    assert probs.shape == (3, 5) and sorted(names) == ["browse", "buy", "compare", "learn", "price"]
    np.testing.assert_allclose(probs.sum(axis=1), 1)
    predicted = qu.item_attributes(iv[:4])
    assert set(predicted) == {"product_type", "colour", "material"} and len(predicted["colour"]) == 4
