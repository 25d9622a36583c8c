"""An experiment's arms in the bundle: each challenger's model file, copied at packaging.

An arm's ``model`` names what ranks for it:

- ``champion``: the packaged champion (nothing to copy)
- ``legacy``: no model; the order the candidates came in (the caller's, or retrieval's)
- ``vNNNN``: a promoted version (``models/champions/vNNNN/``)
- any other name: a trained candidate (``models/candidates/<name>.pt``)

The service loads them from the bundle, so a deployment needs nothing but the bundle.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from shoprank.artifacts import ARMS_DIR, sha256_of
from shoprank.config_experiment import CHAMPION, LEGACY, Arm, Experiment

VERSION = re.compile(r"^v\d{4,}$")


class ArmError(ValueError):
    """An arm names a model that cannot be found or loaded; the message names the arm."""


def artifact_of(models: Path, arm: Arm) -> Path | None:
    """The model file an arm ranks with (None: the champion's, or none for ``legacy``)."""
    if arm.model in (CHAMPION, LEGACY):
        return None
    if VERSION.match(arm.model):
        record = models / "champions" / arm.model / "record.json"
        if not record.is_file():
            raise ArmError(f"arm {arm.name!r}: no promoted version {arm.model} ({record} missing)")
        path = models / json.loads(record.read_text())["artifact"]
    else:
        path = models / "candidates" / f"{arm.model}.pt"
    if not path.is_file():
        raise ArmError(f"arm {arm.name!r}: model {arm.model!r} not found ({path} missing)")
    return path


def package_arms(experiment: Experiment, models: Path, out: Path) -> dict[str, Any] | None:
    """Copy each challenger arm's model into ``out/arms/<arm>.pt`` after checking it loads;
    returns what the manifest records (None without an experiment)."""
    from shoprank.models.scorers import load

    if not experiment.active:
        return None
    arms: dict[str, Any] = {}
    for arm in experiment.arms:
        path = artifact_of(models, arm)
        entry: dict[str, Any] = {"model": arm.model}
        if path is not None:
            try:
                kind, _ = load(path)
            except Exception as exc:
                raise ArmError(f"arm {arm.name!r}: {path} does not load ({exc})") from exc
            (out / ARMS_DIR).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out / ARMS_DIR / f"{arm.name}.pt")
            entry.update({"kind": kind, "sha256": sha256_of(path)})
        arms[arm.name] = entry
    return {"name": experiment.name, "mode": experiment.mode, "arms": arms}


def digest(experiment: Experiment) -> str:
    """A short fingerprint of the arms, so a changed experiment is packaged again."""
    if not experiment.active:
        return ""
    text = json.dumps([[a.name, a.model] for a in experiment.arms])
    return hashlib.sha256(f"{experiment.name}:{text}".encode()).hexdigest()[:8]
