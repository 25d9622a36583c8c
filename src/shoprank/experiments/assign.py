"""Which arm a request sees: a deterministic hash of its unit into the arms' traffic shares.

The unit is the shopper (their pseudonym) when ``experiment.unit`` is ``user`` and the
request names one, else the request itself. The hash is salted with the experiment's name,
so one shopper stays in one arm for the experiment's life while a new experiment splits
shoppers afresh; every worker, and every restart, assigns alike.
"""

from __future__ import annotations

import hashlib

from shoprank.config_experiment import Arm, Experiment


def unit_key(experiment: Experiment, user_id: str | None, request_id: str) -> str:
    """What is randomised: the shopper, or (by setting, or for an anonymous request) the request."""
    return user_id if experiment.unit == "user" and user_id else request_id


def bucket(name: str, key: str) -> float:
    """A uniform number in [0, 1) fixed by the experiment's name and the unit."""
    digest = hashlib.sha256(f"{name}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def arm_for(experiment: Experiment, key: str) -> Arm:
    """The arm whose slice of the cumulative shares holds the unit's bucket."""
    u, upto = bucket(experiment.name, key), 0.0
    for arm in experiment.arms:
        upto += arm.share
        if u < upto:
            return arm
    return experiment.arms[-1]  # shares summing to 1 within rounding
