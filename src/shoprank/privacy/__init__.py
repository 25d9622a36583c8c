"""Shoppers' privacy: pseudonyms instead of the shop's user ids, scrubbed queries, erasure.

- :func:`pseudonym` (pseudonyms.py): a raw user id -> its keyed-hash pseudonym; the import,
  the simulator's batch and the service call it where a user id comes in
- :func:`scrub` (scrub.py): a query without e-mail addresses and phone numbers
- :class:`Shoppers` (erasure.py): the key and the erasure list a step honours
- :func:`forget` (forget.py): ``shoprank forget``, one shopper removed from every store
"""

from shoprank.privacy.erasure import Shoppers, read_erased
from shoprank.privacy.pseudonyms import PseudonymKeyError, fingerprint, load_key, pseudonym, pseudonymise
from shoprank.privacy.scrub import scrub, scrub_series

__all__ = [
    "PseudonymKeyError",
    "Shoppers",
    "fingerprint",
    "load_key",
    "pseudonym",
    "pseudonymise",
    "read_erased",
    "scrub",
    "scrub_series",
]
