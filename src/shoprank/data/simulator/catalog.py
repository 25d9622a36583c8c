"""Products: latent truth (type, attributes, quality) and the text a shop would write."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shoprank.config import Market
from shoprank.data.simulator.world import World
from shoprank.data.vocab import DESCRIPTION_SENTENCES, MODEL_WORDS, TITLE_TEMPLATES

HISTORY_DAYS = 730  # established items were listed up to two years before the window


@dataclass
class Items:
    """Latent item arrays, one entry per item, indexed by item number."""

    type: np.ndarray  # product type index
    top: np.ndarray
    sub: np.ndarray
    brand: np.ndarray  # global brand index
    colour: np.ndarray  # index into the top category's colours
    material: np.ndarray
    size: np.ndarray  # index into the top category's sizes, -1 where sizeless
    feature: np.ndarray  # (n, 2) indices into the type's features, -1 for none
    quality: np.ndarray  # latent quality ~ N(0, 1)
    price: np.ndarray
    rel_log_price: np.ndarray  # log(price / median price of the type)
    created_day: np.ndarray  # days since the window start (negative: before it)
    popularity: np.ndarray  # past sales the legacy engine knows; 0 for new items

    def __len__(self) -> int:
        return len(self.type)


def sample_items(w: World, n: int, days: int, market: Market, rng: np.random.Generator) -> Items:
    # product types are not equally common: a mild Zipf over a random order
    type_weight = 1.0 / np.arange(1, w.n_types + 1) ** 0.6
    type_weight = rng.permutation(type_weight) / type_weight.sum()
    type_ = rng.choice(w.n_types, size=n, p=type_weight)
    top = w.type_top[type_]
    n_brands_per_top = np.bincount(w.brand_top)
    brand_offset = np.concatenate([[0], np.cumsum(n_brands_per_top)[:-1]])
    # within a category some brands are bigger than others
    brand_local = np.minimum(rng.zipf(1.6, size=n) - 1, n_brands_per_top[top] - 1)
    brand = brand_offset[top] + brand_local

    def pick(counts: np.ndarray) -> np.ndarray:
        return np.where(counts > 0, (rng.random(n) * np.maximum(counts, 1)).astype(int), -1)

    n_colours = np.array([len(t.colours) for t in w.tops])[top]
    n_materials = np.array([len(t.materials) for t in w.tops])[top]
    n_sizes = np.array([len(t.sizes) for t in w.tops])[top]
    n_features = np.array([len(pt.features) for pt in w.types])[type_]
    f1 = pick(n_features)
    f2 = (f1 + 1 + (rng.random(n) * (n_features - 1)).astype(int)) % n_features
    f2 = np.where(rng.random(n) < 0.5, f2, -1)

    quality = rng.normal(size=n)
    brand_premium = rng.normal(0, 0.2, size=len(w.brands))[brand]
    median_price = np.array([pt.price for pt in w.types])[type_]
    rel_log_price = rng.normal(0, 0.35, size=n) + 0.15 * quality + brand_premium
    price = np.round(median_price * np.exp(rel_log_price), 2).clip(0.99)

    is_new = rng.random(n) < market.new_item_share
    created_day = np.where(is_new, rng.random(n) * days, -rng.random(n) * HISTORY_DAYS)
    age_years = np.clip(-created_day, 0, None) / 365
    popularity = np.where(
        is_new, 0.0, np.round(np.exp(0.8 * quality + rng.normal(0, 1, n) + 1.5 * np.sqrt(age_years) + 1))
    )
    return Items(
        type_,
        top,
        w.type_sub[type_],
        brand,
        pick(n_colours),
        pick(n_materials),
        pick(n_sizes),
        np.stack([f1, f2], axis=1),
        quality,
        price,
        np.log(price / median_price),
        created_day,
        popularity,
    )


def item_attributes(w: World, items: Items, i: int) -> dict:
    top = w.tops[items.top[i]]
    pt = w.types[items.type[i]]
    attrs: dict = {"colour": top.colours[items.colour[i]], "material": top.materials[items.material[i]]}
    if items.size[i] >= 0:
        attrs["size"] = top.sizes[items.size[i]]
    attrs["features"] = [pt.features[f] for f in items.feature[i] if f >= 0]
    return attrs


def render_catalog(
    w: World, items: Items, start: pd.Timestamp, market: Market, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (catalog table, true-attribute table) for ``items``."""
    n = len(items)
    ids = np.array([f"item_{i:06d}" for i in range(n)], dtype=object)
    titles, descriptions, observed, true_attrs = [], [], [], []
    tmpl = rng.integers(len(TITLE_TEMPLATES), size=n)
    name_pick = rng.random(n)
    model_pick = rng.integers(len(MODEL_WORDS), size=n)
    keep = rng.random((n, 4)) >= market.missing_attribute_rate
    for i in range(n):
        pt = w.types[items.type[i]]
        attrs = item_attributes(w, items, i)
        slots = {
            "brand": w.brands[items.brand[i]],
            "model": MODEL_WORDS[model_pick[i]],
            "pt": pt.title_names[int(name_pick[i] * len(pt.title_names))],
            "colour": attrs["colour"],
            "material": attrs["material"],
            "feature": attrs["features"][0],
        }
        title = TITLE_TEMPLATES[tmpl[i]].format(**slots)
        if "size" in attrs and keep[i, 3]:
            title += f", size {attrs['size']}"
        titles.append(title)
        order = rng.permutation(len(DESCRIPTION_SENTENCES))[:3]
        descriptions.append(" ".join(DESCRIPTION_SENTENCES[j].format(**slots) for j in order))
        # the structured field is incomplete: each attribute goes missing independently
        obs = {k: v for (k, v), kept in zip(attrs.items(), keep[i], strict=False) if kept}
        observed.append(json.dumps(obs, sort_keys=True))
        true_attrs.append(attrs)
    created = start + pd.to_timedelta(items.created_day, unit="D")
    catalog = pd.DataFrame(
        {
            "item_id": ids,
            "title": titles,
            "description": descriptions,
            "category": [w.category_path(t) for t in items.type],
            "brand": [w.brands[b] for b in items.brand],
            "price": items.price,
            "attributes": observed,
            "created_at": created.floor("s"),
        }
    )
    truth = pd.DataFrame(
        {
            "item_id": ids,
            "product_type": [w.types[t].name for t in items.type],
            "colour": [a["colour"] for a in true_attrs],
            "material": [a["material"] for a in true_attrs],
            "size": [a.get("size") for a in true_attrs],
            "features": [json.dumps(a["features"]) for a in true_attrs],
            "quality": items.quality,
            "past_sales": items.popularity,
            "is_new": items.created_day >= 0,
        }
    )
    return catalog, truth
