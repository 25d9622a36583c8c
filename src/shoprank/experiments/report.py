"""The report of an experiment: per arm outcomes with intervals, differences, the split, the decision.

A/B (:func:`ab_report`): per arm, over its requests, the requests, units, impressions, clicks,
purchases and revenue, and with intervals at level ``1 - alpha`` the CTR (clicks over
impressions), clicks, purchases and revenue per request, each a ratio of sums over the arm's
randomisation units with the delta method's interval (a user's requests are not independent);
each challenger's difference to the champion arm (the first arm whose model is ``champion``);
the sample-ratio check of the units per arm against the shares; the sequential test of each
challenger on ``experiment.metric``.

Interleaving (:func:`interleave_report`): each click is credited to the team (arm) that
placed the clicked item; a request with credited clicks is a win for the team with more of
them, else a tie. The preference is the mean of the per-request indicator (+1 challenger
win, -1 champion win, 0 tie) over the requests with credited clicks,
``(wins_challenger - wins_champion) / (wins + ties)``, and the sequential test runs on it.

With several challengers each sequential test runs at ``alpha / challengers`` (Bonferroni),
so the chance that any of them decides wrongly stays at most alpha.
"""

from __future__ import annotations

import pandas as pd

from shoprank.config_experiment import Arm, Experiment
from shoprank.experiments.outcomes import Outcomes
from shoprank.experiments.sequential import replay_one_sample, replay_two_arms
from shoprank.experiments.stats import Estimate, difference, ratio_estimate, sample_ratio

# experiment.metric -> what the sequential test compares: a ratio of sums (``requests`` is 1 per request)
TESTED: dict[str, tuple[str, str]] = {
    "ctr": ("clicks", "impressions"),
    "purchases": ("purchases", "requests"),
    "revenue": ("revenue", "requests"),
}
RATIOS = {
    "ctr": ("clicks", "impressions"),
    "clicks_per_request": ("clicks", "requests"),
    "purchases_per_request": ("purchases", "requests"),
    "revenue_per_request": ("revenue", "requests"),
}


def estimates(req: pd.DataFrame, alpha: float, priced: bool) -> dict[str, Estimate]:
    """The CTR and the per-request means of one arm's requests, as ratios of sums over its units."""
    units = req.assign(requests=1).groupby("unit")[
        ["clicks", "impressions", "purchases", "revenue", "requests"]
    ]
    sums = units.sum()
    return {
        name: ratio_estimate(sums[y].to_numpy(), sums[m].to_numpy(), alpha)
        for name, (y, m) in RATIOS.items()
        if y != "revenue" or priced
    }


def arm_summary(req: pd.DataFrame, arm: Arm, role: str, alpha: float, priced: bool) -> dict:
    revenue = float(req["revenue"].sum()) if priced else None
    return {
        "model": arm.model,
        "share": arm.share,
        "role": role,
        "units": int(req["unit"].nunique()),
        "requests": len(req),
        "impressions": int(req["impressions"].sum()),
        "clicks": int(req["clicks"].sum()),
        "purchases": int(req["purchases"].sum()),
        "revenue": revenue,
        **{k: e.to_dict() for k, e in estimates(req, alpha, priced).items()},
    }


def ab_report(out: Outcomes, experiment: Experiment) -> dict:
    """The A/B report of ``out`` (see the module)."""
    e, req = experiment, out.requests
    champion, rivals = e.champion, e.challengers
    of = {a.name: req[(req["arm"] == a.name).fillna(False).to_numpy(dtype=bool)] for a in e.arms}
    base = estimates(of[champion.name], e.alpha, out.priced)
    arms = {champion.name: arm_summary(of[champion.name], champion, "champion", e.alpha, out.priced)}
    differences, sequential = {}, {}
    level = e.alpha / len(rivals)
    for arm in rivals:
        arms[arm.name] = arm_summary(of[arm.name], arm, "challenger", e.alpha, out.priced)
        mine = estimates(of[arm.name], e.alpha, out.priced)
        differences[arm.name] = {k: difference(mine[k], base[k], e.alpha).to_dict() for k in mine}
        pair = req[req["arm"].isin([arm.name, champion.name]).fillna(False).to_numpy(dtype=bool)]
        test = replay_two_arms(
            pair, pair["arm"] == arm.name, TESTED[e.metric], e.mixture_variance, level, e.min_units
        )
        sequential[arm.name] = test.to_dict() | {"alpha": level}
    units = req.dropna(subset=["arm"]).groupby("unit")["arm"].nunique()
    srm = sample_ratio(
        {n: a["units"] for n, a in arms.items()}, {a.name: a.share for a in e.arms}, e.srm_alpha
    )
    srm["units_in_several_arms"] = int((units > 1).sum())
    return {"arms": arms, "differences": differences, "srm": srm, "sequential": sequential}


def interleave_credit(out: Outcomes, experiment: Experiment) -> pd.DataFrame:
    """Per request (time order): the clicks credited to each team and the win indicator."""
    champion, (rival,) = experiment.champion, experiment.challengers
    imp = out.impressions
    credit = pd.DataFrame({"request_id": imp["request_id"]})
    for side, arm in (("champion", champion), ("challenger", rival)):
        credit[side] = imp["clicked"] * (imp["arm"] == arm.name).fillna(False).astype("int64")
        credit[f"{side}_placed"] = (imp["arm"] == arm.name).fillna(False).astype("int64")
    sums = credit.groupby("request_id").sum()
    req = out.requests.join(sums, on="request_id")
    diff = req["challenger"] - req["champion"]
    req["win"] = (diff > 0).astype("int64") - (diff < 0).astype("int64")
    req["credited"] = (req["challenger"] + req["champion"]) > 0
    return req


def interleave_report(out: Outcomes, experiment: Experiment) -> dict:
    """The interleaving report of ``out`` (see the module)."""
    e = experiment
    champion, (rival,) = e.champion, e.challengers
    req = interleave_credit(out, e)
    credited = req[req["credited"].to_numpy(dtype=bool)]
    per_unit = credited.assign(requests=1).groupby("unit")[["win", "requests"]].sum()
    pages = req.groupby("unit")[["clicks", "impressions"]].sum()
    wins = {rival.name: int((credited["win"] > 0).sum()), champion.name: int((credited["win"] < 0).sum())}
    arms = {}
    for side, arm in (("champion", champion), ("challenger", rival)):
        arms[arm.name] = {
            "model": arm.model,
            "role": side,
            "placed": int(req[f"{side}_placed"].sum()),  # items the team put on the pages
            "clicks": int(req[side].sum()),  # clicks credited to the team
            "wins": wins[arm.name],
        }
    test = replay_one_sample(req, "win", req["credited"], e.mixture_variance, e.alpha, e.min_units)
    interleaving = {
        "requests": len(req),
        "requests_with_clicks": int((req["clicks"] > 0).sum()),
        "requests_with_credited_clicks": len(credited),
        "ties": len(credited) - sum(wins.values()),
        "uncredited_clicks": int(req["clicks"].sum() - req["champion"].sum() - req["challenger"].sum()),
        "preference": ratio_estimate(
            per_unit["win"].to_numpy(), per_unit["requests"].to_numpy(), e.alpha
        ).to_dict(),
        "ctr": ratio_estimate(pages["clicks"].to_numpy(), pages["impressions"].to_numpy(), e.alpha).to_dict(),
    }
    sequential = {rival.name: test.to_dict() | {"alpha": e.alpha}}
    return {"arms": arms, "interleaving": interleaving, "srm": None, "sequential": sequential}
