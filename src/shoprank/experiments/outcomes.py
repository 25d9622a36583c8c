"""One experiment's records of the feedback log, joined into impressions and per-request outcomes.

The experiment's impressions are its ``served`` records (``experiment`` = the configured name;
records of other experiments and outside experiments are not read). Clicks and purchases do
not carry the arm: each is joined to the served record of the same ``(request_id, item_id)``.
An impression is clicked (purchased) when at least one click (purchase) names it, so a repeated
record counts once. A purchase earns the item's catalogue price.

Set aside, counted and written to quarantine by the step, never fatal:

* ``unknown-arm``: every record of a request whose served records name an arm that is not
  one of ``experiment.arms`` (a renamed arm, an old configuration): its outcomes cannot be
  credited to any arm;
* ``several-arms`` (A/B only): every record of a request whose served records name more than
  one arm, or none (each A/B request is served by one arm; exploration slots carry no arm and
  belong to their request's arm);
* ``unmatched``: clicks and purchases with no served record of that request and item anywhere
  in the log (records that name another experiment are left to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from shoprank.config_experiment import Experiment

KEY = ["request_id", "item_id"]
UNKNOWN_ARM = "unknown-arm"
SEVERAL_ARMS = "several-arms"
UNMATCHED = "unmatched"
REASONS = {
    UNKNOWN_ARM: "the request's served records name an arm that experiment.arms does not have",
    SEVERAL_ARMS: "an A/B request whose served records name several arms, or none",
    UNMATCHED: "no served record of this request and item in the log",
}


@dataclass
class Outcomes:
    """The experiment's impressions and requests, what was set aside, and the counts."""

    impressions: pd.DataFrame  # request_id, item_id, ts, user_id, arm, clicked, purchased, revenue
    requests: pd.DataFrame  # request_id, ts, unit, arm (A/B), impressions, clicks, purchases, revenue
    set_aside: dict[str, pd.DataFrame] = field(default_factory=dict)  # reason -> log records
    counts: dict[str, int] = field(default_factory=dict)
    priced: bool = True  # False: no catalogue, revenue unknown


def _pairs(df: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(df[KEY].astype("string"))


def _is(series: pd.Series, value: str) -> pd.Series:
    return (series.astype("string") == value).fillna(False).astype(bool)


def _bad_requests(served: pd.DataFrame, experiment: Experiment) -> dict[str, set]:
    """Request ids to set aside, by reason (a request appears under one reason only)."""
    arm = served["arm"].astype("string")
    unknown = arm.notna() & ~arm.isin([a.name for a in experiment.arms])
    out = {UNKNOWN_ARM: set(served.loc[unknown.to_numpy(), "request_id"])}
    if experiment.mode == "ab":
        arms = served.assign(arm=arm.where(~unknown)).groupby("request_id")["arm"].nunique()
        out[SEVERAL_ARMS] = set(arms.index[arms.to_numpy() != 1]) - out[UNKNOWN_ARM]
    return out


def _feedback(
    feedback: pd.DataFrame, served_all: pd.DataFrame, mine: pd.DataFrame, name: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the clicks and purchases of the served records ``mine``, those of no served record at all)."""
    named = feedback["experiment"].astype("string")
    feedback = feedback[(named.isna() | _is(named, name)).to_numpy()]  # others belong to their experiment
    feedback = feedback.sort_values(["ts", "event_id"], kind="stable")
    matched = _pairs(feedback).isin(_pairs(mine))
    rest = feedback[~matched]  # another experiment's, outside experiments, or no served record at all
    there = served_all[served_all["request_id"].isin(rest["request_id"]).to_numpy()]
    return feedback[matched], rest[~_pairs(rest).isin(_pairs(there))]


def read_outcomes(frame: pd.DataFrame, experiment: Experiment, prices: pd.Series | None) -> Outcomes:
    """The outcomes of ``experiment`` in ``frame`` (the feedback log, typed as the contract).

    ``prices``: the catalogue's price per item id; None leaves revenue unknown (NaN).
    """
    event = frame["event"].astype("string")
    served_all = frame[(event == "served").to_numpy()]
    mine = served_all[_is(served_all["experiment"], experiment.name).to_numpy()]
    mine = mine.sort_values(["ts", "event_id"], kind="stable")  # "first" is the same record on every run
    counts = {"served": len(mine)}
    mine = mine.drop_duplicates(KEY)
    clicks = frame[event.isin(["click", "purchase"]).to_numpy()]
    feedback, unmatched = _feedback(clicks, served_all, mine, experiment.name)
    counts |= {"clicks": int((feedback["event"] == "click").sum())}
    counts |= {"purchases": int((feedback["event"] == "purchase").sum())}
    set_aside = {UNMATCHED: unmatched}

    for reason, ids in _bad_requests(mine, experiment).items():
        set_aside[reason] = pd.concat(
            [mine[mine["request_id"].isin(ids)], feedback[feedback["request_id"].isin(ids)]]
        )
        mine, feedback = mine[~mine["request_id"].isin(ids)], feedback[~feedback["request_id"].isin(ids)]

    imp = mine[["request_id", "item_id", "ts", "user_id", "arm"]].reset_index(drop=True)
    imp["arm"] = imp["arm"].astype("string")
    keys = _pairs(imp)
    for column, kind in (("clicked", "click"), ("purchased", "purchase")):
        imp[column] = keys.isin(_pairs(feedback[feedback["event"] == kind])).astype("int64")
    revenue, missing = _revenue(imp, prices)
    imp["revenue"] = revenue
    counts |= {
        "impressions": len(imp),
        "clicked_impressions": int(imp["clicked"].sum()),
        "purchased_impressions": int(imp["purchased"].sum()),
        "purchases_without_price": missing,
    }
    counts |= {f"set_aside_{r.replace('-', '_')}": len(df) for r, df in set_aside.items()}
    return Outcomes(imp, per_request(imp, experiment), set_aside, counts, prices is not None)


def _revenue(imp: pd.DataFrame, prices: pd.Series | None) -> tuple[pd.Series, int]:
    """The price of each purchased impression (0 if not bought); purchases of unpriced items count 0."""
    if prices is None:
        return pd.Series(float("nan"), index=imp.index), 0
    price = imp["item_id"].astype("string").map(prices).astype("float64")
    bought = imp["purchased"].to_numpy(dtype=bool)
    missing = int((bought & price.isna().to_numpy()).sum())
    return price.where(bought, 0.0).fillna(0.0), missing


def per_request(imp: pd.DataFrame, experiment: Experiment) -> pd.DataFrame:
    """One row per request in time order: its unit, arm (A/B) and outcomes."""
    g = imp.groupby("request_id", sort=False)
    req = pd.DataFrame(
        {
            "ts": g["ts"].min(),
            "user_id": g["user_id"].first(),
            "arm": g["arm"].first(),  # first non-null: exploration slots carry none
            "impressions": g.size(),
            "clicks": g["clicked"].sum(),
            "purchases": g["purchased"].sum(),
            "revenue": g["revenue"].sum(min_count=1),
        }
    ).reset_index()
    by_request = "request:" + req["request_id"].astype("string")
    if experiment.unit == "user":  # anonymous requests are randomised by request
        req["unit"] = ("user:" + req["user_id"].astype("string")).fillna(by_request)
    else:
        req["unit"] = by_request
    if experiment.mode == "interleave":
        req["arm"] = pd.NA  # every interleaved request shows both teams
    return req.sort_values(["ts", "request_id"], kind="stable").reset_index(drop=True)
