"""The category tree of vocab.py flattened into index arrays the simulator vectorises over."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from shoprank.data.vocab import CATALOG_TREE, ProductType, TopCategory


@dataclass(frozen=True)
class World:
    tops: tuple[TopCategory, ...]
    subs: tuple[str, ...]  # subcategory names
    types: tuple[ProductType, ...]
    sub_top: np.ndarray  # (n_subs,) top index of each subcategory
    type_sub: np.ndarray  # (n_types,) subcategory index of each product type
    type_top: np.ndarray  # (n_types,)
    brands: tuple[str, ...]  # all brands; brand b belongs to top brand_top[b]
    brand_top: np.ndarray

    @property
    def n_types(self) -> int:
        return len(self.types)

    def category_path(self, type_index: int) -> str:
        sub = int(self.type_sub[type_index])
        return f"{self.tops[int(self.sub_top[sub])].name} > {self.subs[sub]}"


@cache
def world() -> World:
    subs: list[str] = []
    brands: list[str] = []
    sub_top, types, type_sub, brand_top = [], [], [], []
    for t, top in enumerate(CATALOG_TREE):
        for sub_name, sub_types in top.subcategories.items():
            for pt in sub_types:
                types.append(pt)
                type_sub.append(len(subs))
            subs.append(sub_name)
            sub_top.append(t)
        brands += top.brands
        brand_top += [t] * len(top.brands)
    sub_top_a = np.array(sub_top)
    type_sub_a = np.array(type_sub)
    return World(
        tops=CATALOG_TREE,
        subs=tuple(subs),
        types=tuple(types),
        sub_top=sub_top_a,
        type_sub=type_sub_a,
        type_top=sub_top_a[type_sub_a],
        brands=tuple(brands),
        brand_top=np.array(brand_top),
    )
