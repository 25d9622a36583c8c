"""Feature views: which columns of which table are features of which entity.

``ttl=timedelta(0)``: values never expire. Static views (profiles, text) are written
once per entity; snapshot views get a row every day, so the latest row before an
event is always the right one and an expiry would only drop history.

The ``kind`` tag is read by ``shoprank materialize``: ``snapshot`` views load
incrementally, ``static`` views are reloaded whole every time (an edited price or
title keeps its creation stamp, so an incremental load would never pick it up).

The windowed statistics (``features.windows_days``) and the shop's own profile columns
(``data.columns``) are read from params.yaml through the declared model inputs.
"""

from datetime import timedelta
from pathlib import Path

from data_sources import (
    item_profile_source,
    item_stats_source,
    item_text_source,
    query_text_source,
    user_history_source,
    user_profile_source,
    user_stats_source,
)
from entities import item, query, user
from feast import FeatureView, Field
from feast.types import Array, Float32, Int64, String

from shoprank.features.repo import shop_fields, windowed_fields

REPO = Path(__file__).resolve().parent
FOREVER = timedelta(0)


def _version(view: str) -> Field:
    # Views with array features carry their row's stamp as a scalar: shoprank's training
    # set lets Feast pick the row by this field and reads the arrays back by (key, version).
    return Field(name=f"{view}_version", dtype=Int64, description="Row stamp, microseconds since the epoch.")


item_profile = FeatureView(
    name="item_profile",
    entities=[item],
    ttl=FOREVER,
    source=item_profile_source,
    online=True,
    schema=[
        Field(name="price", dtype=Float32),
        Field(name="log_price", dtype=Float32, description="log(1 + price)"),
        Field(name="category", dtype=String, description="Full category path."),
        Field(name="category_top", dtype=String, description="First level of the category path."),
        Field(name="brand", dtype=String),
        Field(name="colour", dtype=String, description="From attributes; null when unknown."),
        Field(name="material", dtype=String, description="From attributes; null when unknown."),
        Field(name="size", dtype=String, description="From attributes; null when unknown."),
        Field(name="n_attributes", dtype=Int64, description="Keys in the attributes JSON."),
        Field(name="n_features", dtype=Int64, description="Entries of attributes.features."),
        *shop_fields(REPO, "item_profile"),  # data.columns.catalog
    ],
    tags={"kind": "static"},
)

item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    ttl=FOREVER,
    source=item_stats_source,
    online=True,
    schema=[
        Field(name="item_age_days", dtype=Float32, description="Days since listing, at the snapshot."),
        Field(name="item_is_new", dtype=Int64, description="1 if younger than features.new_item_days."),
        *windowed_fields(REPO, "item_stats"),
    ],
    tags={"kind": "snapshot"},
)

item_text = FeatureView(
    name="item_text",
    entities=[item],
    ttl=FOREVER,
    source=item_text_source,
    online=True,
    schema=[
        _version("item_text"),
        Field(
            name="item_embedding", dtype=Array(Float32), description="Text encoder of title + description."
        ),
    ],
    tags={"kind": "static", "text": "true"},
)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=FOREVER,
    source=user_profile_source,
    online=True,
    schema=[
        Field(name="region", dtype=String, description="Null when the batch has no region column."),
        Field(name="device", dtype=String, description="Null when the batch has no device column."),
        *shop_fields(REPO, "user_profile"),  # data.columns.users
    ],
    tags={"kind": "static"},
)

user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=FOREVER,
    source=user_stats_source,
    online=True,
    schema=[
        *windowed_fields(REPO, "user_stats"),
        Field(name="user_impressions_today", dtype=Int64, description="Shown earlier the same day (UTC)."),
        Field(name="user_ctr_today", dtype=Float32, description="Beta-smoothed CTR earlier the same day."),
        Field(name="user_clicks", dtype=Int64, description="Clicks before the snapshot."),
        Field(
            name="user_price_pref", dtype=Float32, description="Mean price of clicked items; null before any."
        ),
    ],
    tags={"kind": "snapshot"},
)

user_history = FeatureView(
    name="user_history",
    entities=[user],
    ttl=FOREVER,
    source=user_history_source,
    online=True,
    schema=[
        _version("user_history"),
        Field(name="recent_items", dtype=Array(String), description="Last clicked item ids, newest first."),
        Field(name="recent_categories", dtype=Array(String), description="Their categories, same order."),
    ],
    tags={"kind": "snapshot"},
)

query_text = FeatureView(
    name="query_text",
    entities=[query],
    ttl=FOREVER,
    source=query_text_source,
    online=True,
    schema=[
        _version("query_text"),
        Field(name="query_text", dtype=String, description="The normalised query."),
        Field(name="query_embedding", dtype=Array(Float32), description="Text encoder of the query."),
    ],
    tags={"kind": "static", "text": "true"},
)
