"""The ``compute:`` section of params.yaml: where the heavy steps run (a part of :mod:`shoprank.config`).

``local`` runs every partition of a step in this process, one after the other; ``ray``
runs the same function on each partition as a Ray task (src/shoprank/compute/).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from shoprank.config_data import Strict

ENGINE = "compute.engine"
ADDRESS = "compute.address"


class Compute(Strict):
    """Engine of the partitioned steps: point-in-time joins, new texts' embeddings, evaluation's scoring."""

    engine: Literal["local", "ray"] = "local"
    # ray only: null starts a Ray in this process; "auto" joins the cluster of this machine's
    # `ray start` (or $RAY_ADDRESS); "host:port" a cluster's head (GCS), "ray://host:port" its Ray Client
    address: str | None = None
    # parts the training set's join and evaluation's candidates are split into (at least); one task
    # each on ray. null: 1 on local (the steps' own chunks), the cluster's CPUs on ray
    partitions: int | None = Field(None, gt=0)
    num_cpus: int | None = Field(None, gt=0)  # CPUs of the Ray started in-process (address: null); null: all
    connect_timeout_s: float = Field(10.0, gt=0)  # how long a cluster's address may take to answer
    # new texts per encoding task (ray); a multiple of text.batch_size keeps the encoder's own batches
    embed_batch: int = Field(4096, gt=0)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        hostport = value.removeprefix("ray://")
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"null, auto, host:port or ray://host:port, not {value!r}")
        return value


LOCAL = Compute()  # the default: every step in its own process
