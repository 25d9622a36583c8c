"""Every model input, declared once: its name, kind, source, explanation group and users.

An input comes from a field of a Feast feature view (``view``), from other columns by a
named derivation (``derive``, see :mod:`shoprank.inputs.derive`) or from the catalog by
item id (``catalog``, see :mod:`shoprank.inputs.texts`). The
training frames, the :class:`~shoprank.models.preprocess.FeatureSpec` of each
candidate, the serving fast path, the explanation groups, the Feast feature services
(features/feature_services.py) and the feature table in docs/features.md are all built
from :data:`INPUTS`; adding an input is one entry here (plus its derivation, if derived).

Windowed statistics are declared once as a family (``{w}`` in the name) and expanded
by ``features.windows_days`` (``7`` -> ``7d``; ``all`` -> all history). The columns a shop
declares in ``data.columns`` are inputs too: :func:`configure` adds them when params load.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal

from shoprank.inputs.derive import DERIVATIONS, Derivation

Kind = Literal["numeric", "categorical", "id", "text_vector", "text", "sequence", "cross"]
Window = int | str  # days, or "all"
Entity = Literal["item", "user", "query", "request"]

NEURAL = frozenset({"bert_ctr", "no_text"})
TABULAR = frozenset({"bert_ctr", "no_text", "lightgbm"})

# explanation group -> what blanking it means for a shopper (wording lives in ranking/explain.py)
GROUPS: dict[str, str] = {
    "query_match": "how well the item matches what the query asks for",
    "popularity": "how often shoppers clicked the item",
    "your_history": "the shopper's recent clicks",
    "price": "the item's price, against the shopper's and the query's",
    "freshness": "how new the item is",
    "brand_category": "the item's brand, category and attributes",
}


@dataclass(frozen=True)
class Input:
    """One model input.

    ``view``: the Feast feature view holding it (a stored input); ``derive``: the name of
    its derivation in :data:`shoprank.inputs.derive.DERIVATIONS` (a derived input); neither:
    a value of the request itself (entity ``request``: an impression column of the shop's,
    sent as ``context`` when serving). ``catalog``: the catalog's value of the item, joined
    by item id (:mod:`shoprank.inputs.texts`): a text a Feast view would copy onto every
    impression of a training set.
    A ``text`` input is what the encoder tokenizes itself when ``train.mode`` is finetune
    or lora; frozen, the network reads the ``text_vector`` of the same text instead.
    ``entity``: whose value it is (item inputs are precomputed per item in serving;
    user and query inputs are one value per request). ``uses``: the candidates that read it.
    ``bias``: a value that shifts every candidate of a request alike (the shopper's day so
    far): the networks add it through their own small tower and never cross it with the
    item's inputs, so it moves how likely a click is, not which item ranks first.
    """

    name: str
    kind: Kind
    entity: Entity
    description: str
    view: str | None = None
    derive: str | None = None
    group: str | None = None
    uses: frozenset[str] = TABULAR
    bias: bool = False
    catalog: bool = False

    def __post_init__(self) -> None:
        sources = (self.view is not None) + (self.derive is not None) + self.catalog
        if sources > 1:
            raise ValueError(f"input {self.name!r}: give one source, a view, a derivation or the catalog")
        if not sources and self.entity != "request" and self.kind != "id":
            raise ValueError(
                f"input {self.name!r}: only a request's own value has neither view nor derivation"
            )
        if self.group is not None and self.group not in GROUPS:
            raise ValueError(f"input {self.name!r}: unknown explanation group {self.group!r}")

    @property
    def family(self) -> bool:
        return "{w}" in self.name

    def expand(self, windows: Iterable[Window]) -> list[Input]:
        if not self.family:
            return [self]
        return [Input(**{**self.__dict__, "name": self.name.format(w=window_label(w))}) for w in windows]


def window_label(window: Window) -> str:
    """How a window appears in column names: ``7`` -> ``7d``; ``all`` (all history) stays ``all``."""
    return "all" if window == "all" else f"{int(window)}d"


def _stored(name: str, kind: Kind, entity: Entity, view: str, group: str | None, description: str,
            uses: frozenset[str] = TABULAR) -> Input:  # fmt: skip
    return Input(name, kind, entity, description, view=view, group=group, uses=uses)


def _derived(name: str, derivation: str, group: str | None, description: str,
             uses: frozenset[str] = TABULAR) -> Input:  # fmt: skip
    return Input(name, "cross", "item", description, derive=derivation, group=group, uses=uses)


BERT = frozenset({"bert_ctr"})
TEXT_HEADS = frozenset({"bert_ctr", "lightgbm"})  # inputs of heads over the query embedding


def _id(name: str, entity: Entity) -> Input:
    """The entity's own key: a learned embedding for an id seen ``train.id_min_count`` times in
    training; rarer and unseen ids share one learned fallback row."""
    return Input(
        name, "id", entity, f"the {entity} itself (learned embedding, shared for rare ids)", uses=NEURAL
    )


# fmt: off
INPUTS: list[Input] = [
    # the item: feature views item_profile, item_stats, item_text
    _stored("category", "categorical", "item", "item_profile", "brand_category", "full category path"),
    _stored("category_top", "categorical", "item", "item_profile", "brand_category", "first category level"),
    _stored("brand", "categorical", "item", "item_profile", "brand_category", "brand"),
    _stored("colour", "categorical", "item", "item_profile", "brand_category", "colour (null: unknown)"),
    _stored("material", "categorical", "item", "item_profile", "brand_category", "material"),
    _stored("size", "categorical", "item", "item_profile", "brand_category", "size"),
    _stored("log_price", "numeric", "item", "item_profile", "price", "log(1 + price)"),
    _stored("n_attributes", "numeric", "item", "item_profile", "brand_category", "attributes filled in"),
    _stored("n_features", "numeric", "item", "item_profile", "brand_category", "listed features"),
    _stored("item_age_days", "numeric", "item", "item_stats", "freshness", "days since listing"),
    _stored("item_is_new", "numeric", "item", "item_stats", "freshness", "listed within new_item_days"),
    _stored("item_impressions_{w}", "numeric", "item", "item_stats", "popularity", "shown, window w"),
    _stored("item_ctr_{w}", "numeric", "item", "item_stats", "popularity", "smoothed CTR, window w"),
    _stored("item_coec_{w}", "numeric", "item", "item_stats", "popularity",
            "clicks over expected clicks at the positions shown, window w"),
    _stored("item_embedding", "text_vector", "item", "item_text", None, "encoded title + description",
            uses=BERT),
    Input("item_text", "text", "item", "title + description, tokenized (train.mode finetune, lora)",
          uses=BERT, catalog=True),
    _id("item_id", "item"),
    # the shopper: user_profile, user_stats, user_history
    _stored("region", "categorical", "user", "user_profile", None, "region"),
    _stored("device", "categorical", "user", "user_profile", None, "device"),
    _stored("user_clicks", "numeric", "user", "user_stats", None, "clicks before the snapshot"),
    _stored("user_impressions_{w}", "numeric", "user", "user_stats", None, "impressions, window w"),
    _stored("user_ctr_{w}", "numeric", "user", "user_stats", None, "smoothed click rate, window w"),
    replace(
        _stored("user_impressions_today", "numeric", "user", "user_stats", None, "shown earlier today (UTC)"),
        bias=True,
    ),
    replace(
        _stored("user_ctr_today", "numeric", "user", "user_stats", None, "smoothed click rate earlier today"),
        bias=True,
    ),
    _stored("recent_items", "sequence", "user", "user_history", "your_history",
            "last clicked items, newest first, attended against the candidate", uses=NEURAL),
    _id("user_id", "user"),
    # the query: query_text
    _stored("query_embedding", "text_vector", "query", "query_text", "query_match", "encoded query",
            uses=BERT),
    _stored("query_text", "text", "query", "query_text", "query_match",
            "the normalised query, tokenized (train.mode finetune, lora)", uses=BERT),
    # crosses of query, shopper and item: shoprank.inputs.derive
    _derived("query_item_cosine", "query_item_cosine", "query_match", "cosine of query and item vectors",
             uses=frozenset({"lightgbm"})),
    _derived("hist_category_share", "history_share", "your_history", "recent clicks in the item's category"),
    _derived("hist_top_share", "history_top_share", "your_history", "recent clicks in its top category"),
    _derived("price_vs_pref", "price_vs_pref", "price", "log price minus log of the mean clicked price"),
    _derived("query_brand_match", "query_brand_match", "query_match", "the query names the item's brand"),
    _derived("query_colour_match", "query_colour_match", "query_match", "the query names its colour"),
    _derived("query_material_match", "query_material_match", "query_match", "the query names its material"),
    _derived("query_size_match", "query_size_match", "query_match", "the query names its size"),
    _derived("query_over_price_cap", "over_price_cap", "price", "price above the cap the query names"),
    # the query's understanding against the item: shoprank.inputs.understood (NaN: no query or head)
    _derived("query_category_prob", "query_category_prob", "query_match",
             "P(the query asks for the item's category), head learned from clicked items", uses=TEXT_HEADS),
    _derived("query_top_prob", "query_top_prob", "query_match",
             "P(the query asks for the item's top category), the same head", uses=TEXT_HEADS),
    _derived("query_bm25", "query_bm25", "query_match", "BM25 of the query in the item's title, "
             "description and attributes"),
    _derived("query_word_overlap", "query_word_overlap", "query_match",
             "share of the query's words in the item's title, description and attributes"),
    Input("query_intent", "categorical", "query", "the query's intent, from the understand step's head "
          "(none: no head or no query)", derive="query_intent", uses=TEXT_HEADS),
]
# fmt: on

# fields that derivations read without being model inputs themselves: field -> its source
SOURCES: dict[str, str] = {
    "price": "item_profile",
    "recent_categories": "user_history",
    "user_price_pref": "user_stats",
    "query": "the request",
    "query_understood": "the request",  # the query read by the understanding heads (inputs/understood.py)
}


# the shop's own columns (data.columns): table -> (whose, Feast view, explanation group)
SHOP_TABLES: dict[str, tuple[Entity, str | None, str | None]] = {
    "users": ("user", "user_profile", None),
    "catalog": ("item", "item_profile", "brand_category"),
    "impressions": ("request", None, None),
}
SHOP: list[Input] = []  # set by configure(), in data.columns' order
WINDOWS: list[tuple[Window, ...]] = [()]  # features.windows_days, set by configure()


def shop_inputs(columns: Mapping[str, Mapping[str, str]]) -> list[Input]:
    """The inputs of the columns a shop declares in ``data.columns`` (table -> column -> kind)."""
    taken = {x.name for x in INPUTS if x not in SHOP} | set(SOURCES)
    out = []
    for table, cols in columns.items():
        entity, view, group = SHOP_TABLES[table]
        for name, kind in cols.items():
            if name in taken:
                raise ValueError(f"data.columns.{table}.{name}: an input of shoprank's has that name")
            description = f"the shop's {table} column ({kind})"
            out.append(Input(name, kind, entity, description, view=view, group=group))  # type: ignore[arg-type]
    return out


def configure(windows: Iterable[Window], columns: Mapping[str, Mapping[str, str]]) -> None:
    """Declare the windows and the shop's columns of the params just loaded (see config.parse_params)."""
    _install(shop_inputs(columns), tuple(windows))


def _install(shop: list[Input], windows: tuple[Window, ...]) -> None:
    for x in SHOP:
        INPUTS.remove(x)
    SHOP[:] = shop
    INPUTS.extend(shop)
    WINDOWS[0] = windows


@contextmanager
def kept() -> Iterator[None]:
    """Restore the configured windows and shop inputs on leaving (a test that loads other params)."""
    shop, windows = list(SHOP), WINDOWS[0]
    try:
        yield
    finally:
        _install(shop, windows)


def shop_columns(table: str) -> dict[str, str]:
    """The columns the shop declares for a contract table (data.columns.<table>): name -> kind."""
    entity = SHOP_TABLES[table][0]
    return {x.name: x.kind for x in SHOP if x.entity == entity}


def request_columns() -> list[str]:
    """The request's own inputs: the impression columns the shop declares (sent as ``context``)."""
    return list(shop_columns("impressions"))


def configured_windows() -> tuple[Window, ...]:
    return WINDOWS[0]


def longest_window(columns: Iterable[str], prefix: str = "item_ctr_") -> str | None:
    """The label of the longest window among ``<prefix><label>`` columns: ``all`` when present."""
    labels = [c.removeprefix(prefix) for c in columns if c.startswith(prefix)]
    if "all" in labels:
        return "all"
    days = [int(x[:-1]) for x in labels if x.endswith("d") and x[:-1].isdigit()]
    return f"{max(days)}d" if days else None


def windowed(view: str) -> list[Input]:
    """The windowed inputs a Feast view stores, one per configured window."""
    return [e for x in INPUTS if x.view == view and x.family for e in x.expand(configured_windows())]


@contextmanager
def declared(*extra: Input, derivations: dict[str, Derivation] | None = None) -> Iterator[None]:
    """Add inputs (and the derivations they name) for the duration of a ``with`` block."""
    added = {k: v for k, v in (derivations or {}).items() if k not in DERIVATIONS}
    DERIVATIONS.update(added)
    INPUTS.extend(extra)
    try:
        for x in extra:
            if x.derive is not None and x.derive not in DERIVATIONS:
                raise KeyError(f"input {x.name!r} names an unknown derivation {x.derive!r}")
        yield
    finally:
        for x in extra:
            INPUTS.remove(x)
        for k in added:
            del DERIVATIONS[k]


def inputs(windows: Iterable[int] | None = None, candidate: str | None = None) -> list[Input]:
    """The declared inputs, families expanded by ``windows`` (None: matched later by name)."""
    out: list[Input] = []
    for x in INPUTS:
        if candidate is not None and candidate not in x.uses:
            continue
        out.extend(x.expand(windows) if windows is not None else [x])
    return out


def _pattern(x: Input) -> re.Pattern[str]:
    return re.compile(re.escape(x.name).replace(re.escape("{w}"), r"(?:\d+d|all)") + r"\Z")


def present(columns: Iterable[str], candidate: str | None = None) -> list[Input]:
    """The declared inputs that ``columns`` hold, in declaration order (families by name)."""
    cols = list(columns)
    out: list[Input] = []
    for x in inputs(candidate=candidate):
        if x.family:
            pat = _pattern(x)
            out.extend(Input(**{**x.__dict__, "name": c}) for c in cols if pat.match(c))
        elif x.name in cols:
            out.append(x)
    return out


def texts() -> dict[Entity, str]:
    """Whose text -> the name of its ``text`` input (what a fine-tuned encoder tokenizes)."""
    return {x.entity: x.name for x in INPUTS if x.kind == "text"}


def by_name(name: str) -> Input:
    for x in INPUTS:
        if x.name == name or (x.family and _pattern(x).match(name)):
            return x
    raise KeyError(f"{name!r} is not a declared model input")


def groups(names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Explanation group -> the given inputs in it (groups with none are left out)."""
    out: dict[str, list[str]] = {}
    for n in names:
        g = by_name(n).group
        if g is not None:
            out.setdefault(g, []).append(n)
    return {g: tuple(out[g]) for g in GROUPS if g in out}


def views(candidates: Iterable[str]) -> list[str]:
    """The Feast views whose fields the candidates read (inputs and derivations' sources)."""
    wanted: list[str] = []
    for c in candidates:
        for x in inputs(candidate=c):
            reads = DERIVATIONS[x.derive].reads if x.derive is not None else ()
            sources = [x.view] if x.view else [_source(r) for r in reads]  # a request's own value: none
            wanted += [v for v in sources if v and v not in wanted]
    return wanted


def _source(name: str) -> str | None:
    if name in SOURCES:
        return SOURCES[name] if SOURCES[name] != "the request" else None
    return by_name(name).view


def markdown() -> str:
    """The docs' feature table (docs/features.md), one row per declared input."""
    lines = [
        "| input | kind | whose | source | explanation group | candidates | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in (x for x in INPUTS if x not in SHOP):  # the shop's own columns are its params', not ours
        reads = "" if x.derive is None else ", ".join(DERIVATIONS[x.derive].reads)
        own = "the key" if x.kind == "id" else "the catalog" if x.catalog else "the request"
        source = f"view `{x.view}`" if x.view else f"`{x.derive}({reads})`" if x.derive else own
        lines.append(
            f"| `{x.name}` | {x.kind} | {x.entity} | {source} | {x.group or '-'} "
            f"| {', '.join(sorted(x.uses))} | {x.description} |"
        )
    return "\n".join(lines) + "\n"
