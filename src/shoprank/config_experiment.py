"""The ``experiment`` section of params.yaml: arms, shares, unit and mode (part of shoprank.config).

An empty ``name`` (the default) means no experiment: the champion serves every request.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CHAMPION = "champion"  # an arm's model: the packaged champion
LEGACY = "legacy"  # an arm's model: no model, the order the candidates came in (a control)


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")  # what the log, the metrics and reports call it
    # champion | legacy | a candidate of train.candidates (models/candidates/<name>.pt) | a
    # promoted version (vNNNN, models/champions/); `shoprank package` puts its model in the bundle
    model: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,60}$")
    share: float = Field(gt=0, le=1)  # of the units (A/B); interleaving ignores it


class Experiment(BaseModel):
    """An online experiment of the service (src/shoprank/experiments)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,60}$")  # empty: no experiment
    # ab: each unit sees one arm; interleave: team-draft, one page merged from the first two arms
    mode: Literal["ab", "interleave"] = "ab"
    unit: Literal["user", "request"] = "user"  # what is randomised; anonymous requests by request
    arms: list[Arm] = Field(default_factory=list)
    alpha: float = Field(0.05, gt=0, lt=0.5)  # error rate of the sequential test and the intervals
    srm_alpha: float = Field(0.001, gt=0, lt=0.5)  # a sample-ratio mismatch below this p-value is flagged
    metric: Literal["ctr", "purchases", "revenue"] = "ctr"  # what the sequential test decides on
    # the mixture variance of the always-valid test (mSPRT): about the squared effect expected
    mixture_variance: float = Field(1e-4, gt=0)
    # units per arm (interleaving: units with a credited click) before the sequential test may
    # decide: its normal approximation and the variance it reads from the data need that many
    min_units: int = Field(100, ge=2)
    gate_promotion: bool = False  # select promotes a challenger only if the experiment says it wins
    # A/B: share of requests shown their candidates in a uniformly random order (in their unit's
    # arm), so that every item has a logging probability at every position and an off-policy
    # estimate of any ranking has support; a cost to those requests' shoppers
    shuffle_share: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _arms(self) -> Experiment:
        if not self.name:
            return self
        names = [a.name for a in self.arms]
        if len(names) < 2:
            raise ValueError(f"experiment {self.name!r} needs at least two arms, got {len(names)}")
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ, got {names}")
        if CHAMPION not in {a.model for a in self.arms}:
            raise ValueError("one arm must serve the champion (model: champion)")
        total = sum(a.share for a in self.arms)
        if self.mode == "ab" and not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"the arms' traffic shares must sum to 1, they sum to {total:g}")
        if self.mode == "interleave" and self.shuffle_share > 0:
            raise ValueError("shuffle_share is for A/B: an interleaved page credits clicks to the rankers")
        if self.mode == "interleave" and len(self.arms) != 2:
            raise ValueError(f"interleaving merges two rankers; the experiment has {len(self.arms)} arms")
        return self

    @property
    def champion(self) -> Arm:
        """The arm that serves the champion (the first, should several)."""
        return next(a for a in self.arms if a.model == CHAMPION)

    @property
    def challengers(self) -> list[Arm]:
        """Every other arm."""
        return [a for a in self.arms if a is not self.champion]

    @property
    def active(self) -> bool:
        return bool(self.name)
