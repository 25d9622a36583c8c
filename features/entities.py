"""Entities: the keys features are looked up by."""

from feast import Entity, ValueType

item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A product of the catalog (catalog.item_id).",
)
user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A shopper (users.user_id).",
)
query = Entity(
    name="query",
    join_keys=["query_id"],
    value_type=ValueType.STRING,
    description="A normalised query text, keyed by shoprank.features.query_id(text).",
)
