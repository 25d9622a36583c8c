"""Data sources: the Parquet tables `shoprank features` writes, one per feature view.

Paths are relative to this repository; ``../data/features`` is ``paths.features`` in
params.yaml (shoprank checks that the two agree before it materialises or joins).
"""

from feast import FileSource

TABLES_DIR = "../data/features"


def _table(name: str, description: str) -> FileSource:
    return FileSource(
        name=name,
        path=f"{TABLES_DIR}/{name}.parquet",
        timestamp_field="event_timestamp",
        description=description,
    )


item_profile_source = _table("item_profile", "Catalog facts per item, stamped at its creation.")
item_stats_source = _table("item_stats", "Daily snapshots of each item's history.")
item_text_source = _table("item_text", "Title + description embedding per item.")
user_profile_source = _table("user_profile", "Profile columns per user, stamped at sign-up.")
user_stats_source = _table("user_stats", "Daily snapshots of each user's history.")
user_history_source = _table("user_history", "Recent clicked items per user, when they change.")
query_text_source = _table("query_text", "Embedding per normalised query, stamped when first seen.")
