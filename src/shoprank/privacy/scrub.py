"""Query text without the contact details shoppers sometimes type into a search box.

E-mail addresses become ``<email>`` and phone numbers ``<phone>`` before a query is kept
(the feedback log, an imported log). A phone number is a run of 7 to 15 digits, possibly
with a leading ``+`` and spaces, dots, dashes, slashes or brackets between them: the
lengths the ITU numbering plan allows. Product codes that are such runs (a GTIN, a long
part number) are masked too, as the two cannot be told apart; shorter numbers (sizes,
model numbers, years) are kept.
"""

from __future__ import annotations

import re

import pandas as pd

EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<![\w+])\+?\(?\d(?:[\s./()-]{0,2}\d){6,14}(?!\w)")
EMAIL_MASK, PHONE_MASK = "<email>", "<phone>"


def scrub(text: str) -> str:
    """``text`` with e-mail addresses and phone numbers masked."""
    if "@" in text:
        text = EMAIL.sub(EMAIL_MASK, text)
    return PHONE.sub(PHONE_MASK, text)


def scrub_series(queries: pd.Series) -> pd.Series:
    """Every query of ``queries`` scrubbed (nulls stay null); each distinct query once."""
    text = queries.astype("string")
    unique = text.dropna().unique()
    mapping = {q: scrub(q) for q in unique}
    return text.map(mapping).astype("string")
