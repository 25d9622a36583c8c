"""Champion selection and atomic promotion of the winning model.

Layout under ``models_dir``::

    champion.json                 the record of the model in service (replaced atomically)
    champions/<version>/<artifact>   every promoted artifact, kept for rollback
    champions/<version>/record.json  the record that version was promoted with

A record holds: version, candidate, metric, metrics, artifact (path relative to
``models_dir``), sha256, lineage (data_version, params_hash, code_version and whatever
else the caller passes), created_at (UTC, ISO 8601) and previous_version.

Safety: the artifact is checked against the checksum recorded at training time
(``<artifact>.sha256``, see :func:`shoprank.artifacts.write_checksum`) before and after it is copied, and
an optional ``verify`` callable loads the copy; a corrupted or truncated checkpoint is
never promoted. champion.json is only ever replaced with ``os.replace`` of a complete,
fsynced temporary file, so a crash leaves either the old record or the new one. A crash
after the copy leaves an unreferenced version folder, which is harmless. Promotions are
expected to run one at a time (one pipeline stage); there is no lock.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shoprank.artifacts import atomic_write, checksum_path, recorded_checksum, sha256_of

CHAMPION = "champion.json"
CHAMPIONS = "champions"
RECORD = "record.json"
REQUIRED_LINEAGE = ("data_version", "params_hash", "code_version")
VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class PromotionResult:
    """What :func:`promote` did: ``record`` is the champion after the call (or None)."""

    promoted: bool
    reason: str
    record: dict[str, Any] | None


def select_winner(candidates: dict[str, dict[str, float]], metric: str, higher_is_better: bool = True) -> str:
    """Name of the candidate with the best ``metric``; NaN values never win.

    Ties go to the first name in sorted order, so the choice is deterministic.
    Raises ValueError when a candidate lacks the metric or none has a finite value.
    """
    missing = sorted(name for name, m in candidates.items() if metric not in m)
    if missing:
        raise ValueError(f"candidates without metric {metric!r}: {missing}")
    valid = {name: float(m[metric]) for name, m in candidates.items() if math.isfinite(float(m[metric]))}
    if not valid:
        raise ValueError(f"no candidate has a finite {metric!r}")
    sign = 1.0 if higher_is_better else -1.0
    return min(sorted(valid), key=lambda name: -sign * valid[name])


def load_champion(models_dir: Path) -> dict[str, Any] | None:
    """The current champion record, or None before the first promotion."""
    path = Path(models_dir) / CHAMPION
    if not path.exists():
        return None
    return json.loads(path.read_text())


def promote(
    models_dir: Path,
    candidate_name: str,
    artifact_path: Path,
    metrics: dict[str, float],
    lineage: dict[str, Any],
    metric: str,
    margin: float,
    higher_is_better: bool = True,
    verify: Callable[[Path], object] | None = None,
    rescored: dict[str, Any] | None = None,
) -> PromotionResult:
    """Make the candidate the champion if it beats the current one by more than ``margin``.

    ``rescored``: the evaluation's entry for the current champion (version and its metrics on
    the challenger's test split). Both are then measured on the same rows; without it, or
    when it is another version, the champion's metrics from its own promotion are used.

    ``margin`` is absolute, on ``metric``: with higher_is_better the challenger needs
    value > champion + margin (so margin 0 still demands a strict improvement).
    ``verify``, if given, is called on the copied artifact (e.g. a loader) and must not
    raise. Refusals return ``promoted=False`` with the reason and leave every file as it was.
    """
    models_dir, artifact_path = Path(models_dir), Path(artifact_path)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    missing = [k for k in REQUIRED_LINEAGE if k not in lineage]
    if missing:
        raise ValueError(f"lineage lacks {missing}")
    current = load_champion(models_dir)
    value = float(metrics.get(metric, math.nan))
    if not math.isfinite(value):
        return PromotionResult(False, f"challenger has no finite {metric!r}", current)
    broken = ""
    if current is not None:
        broken = unusable(models_dir, current)
        if not broken:  # a champion that cannot be served is not defended by its metrics
            refusal = _compare(current, metric, value, margin, higher_is_better, rescored)
            if refusal:
                return PromotionResult(False, refusal, current)
    problem, digest = _check_artifact(artifact_path)
    if problem:
        return PromotionResult(False, problem, current)

    version = _next_version(models_dir, current)
    record = {
        "version": version,
        "candidate": candidate_name,
        "metric": metric,
        "metrics": {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()},
        "artifact": f"{CHAMPIONS}/{version}/{artifact_path.name}",
        "sha256": digest,
        "lineage": lineage,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "previous_version": current["version"] if current and not broken else None,
    }
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    (models_dir / CHAMPIONS).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=models_dir / CHAMPIONS))
    try:
        copy = staging / artifact_path.name
        shutil.copy2(artifact_path, copy)
        if sha256_of(copy) != digest:
            return PromotionResult(False, "artifact changed while it was copied", current)
        if verify is not None:
            try:
                verify(copy)
            except Exception as e:  # any failure to load means: do not promote
                return PromotionResult(False, f"artifact failed verification: {e!r}", current)
        (staging / RECORD).write_text(text)
        os.rename(staging, models_dir / CHAMPIONS / version)  # atomic; the folder is new
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already unless we bailed out
    atomic_write(models_dir / CHAMPION, text)
    why = f" (champion {current['version']} could not serve: {broken})" if broken and current else ""
    return PromotionResult(True, f"promoted {candidate_name} as {version}{why}", record)


def unusable(models_dir: Path, champion: dict[str, Any]) -> str:
    """Why the champion's own artifact cannot be served ('' when it can).

    The record (models/champion.json) is in git, the artifact in DVC's cache: a clone
    that has the record but not the artifact must not keep a champion it cannot load.
    """
    artifact = models_dir / champion.get("artifact", "")
    if not artifact.is_file():
        return f"its artifact {artifact} is missing"
    if sha256_of(artifact) != champion.get("sha256"):
        return f"its artifact {artifact} does not match the recorded sha256"
    return ""


def rollback(models_dir: Path) -> dict[str, Any]:
    """Restore the previous champion's record atomically and return it.

    The rolled-back version stays on disk. Raises ValueError without a previous champion.
    """
    models_dir = Path(models_dir)
    current = load_champion(models_dir)
    if current is None or current.get("previous_version") is None:
        raise ValueError(f"no previous champion to roll back to in {models_dir}")
    record_path = models_dir / CHAMPIONS / current["previous_version"] / RECORD
    text = record_path.read_text()
    record = json.loads(text)
    artifact = models_dir / record["artifact"]
    if not artifact.is_file() or sha256_of(artifact) != record["sha256"]:
        raise ValueError(f"previous champion's artifact is missing or corrupted: {artifact}")
    atomic_write(models_dir / CHAMPION, text)
    return record


def _compare(
    current: dict[str, Any],
    metric: str,
    value: float,
    margin: float,
    higher: bool,
    rescored: dict[str, Any] | None = None,
) -> str:
    """Why the challenger does not beat the champion, or '' when it does."""
    same_split = rescored is not None and rescored.get("version") == current["version"]
    scored = same_split and "metrics" in rescored  # type: ignore[operator]
    old = (rescored["metrics"] if scored else current.get("metrics", {})).get(metric)  # type: ignore[index]
    where = "on the same test split" if scored else "as promoted"
    if old is None:
        return f"champion {current['version']} has no {metric!r} to compare with"
    gain = value - old if higher else old - value
    if gain > margin:
        return ""
    return (
        f"{metric} {value:.6g} does not beat champion {current['version']} ({old:.6g} {where}) "
        f"by more than {margin:g}"
    )


def _check_artifact(path: Path) -> tuple[str, str]:
    """(problem, digest): problem is '' when the artifact matches its training-time checksum."""
    if not path.is_file():
        return f"artifact {path} is missing or not a file", ""
    expected = recorded_checksum(path)
    if expected is None:
        return f"no checksum {checksum_path(path).name} recorded at training time", ""
    digest = sha256_of(path)
    if digest != expected:
        return f"artifact {path.name} does not match its checksum (corrupted or truncated)", ""
    return "", digest


def _next_version(models_dir: Path, current: dict[str, Any] | None = None) -> str:
    """v0001, v0002, ...: one past the highest version on disk or in the current record."""
    folder = models_dir / CHAMPIONS
    names = [p.name for p in folder.glob("v*")] + ([str(current.get("version", ""))] if current else [])
    numbers = [int(m.group(1)) for name in names if (m := VERSION.match(name))]
    return f"v{max(numbers, default=0) + 1:04d}"


def lineage(params_file: Path, data_version: str) -> dict[str, Any]:
    """What a champion was made from: the data batch, the params, the code."""
    import subprocess

    try:
        code = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        code += "-dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        code = "unknown"
    return {"data_version": data_version, "params_hash": sha256_of(Path(params_file)), "code_version": code}


def run_select(params: Any, params_file: Path, evaluation: Path) -> PromotionResult:
    """The `select` step: the winner of metrics/evaluate.json challenges the champion.

    With ``experiment.gate_promotion`` the winner must also have won the online experiment
    (:mod:`shoprank.experiments.gate`), else the champion stays and the reason says why.
    """
    from shoprank.models.scorers import load as load_scorer
    from shoprank.quality import current_batch

    report = json.loads(Path(evaluation).read_text())
    s = params.select
    winner = select_winner(report["candidates"], s.metric, s.higher_is_better)
    if params.experiment.gate_promotion:  # offline metrics alone do not promote: the experiment must agree
        from shoprank.experiments.gate import refusal

        why = refusal(Path(params.paths.metrics) / "experiment.json", params.experiment, winner)
        if why:
            return PromotionResult(False, f"experiment gate: {why}", load_champion(params.paths.models))
    artifact = Path(params.paths.models) / "candidates" / f"{winner}.pt"
    data_version = current_batch(params.paths.validated).name
    return promote(
        Path(params.paths.models),
        winner,
        artifact,
        report["candidates"][winner],
        lineage(params_file, data_version),
        s.metric,
        s.margin,
        s.higher_is_better,
        verify=load_scorer,
        rescored=report.get("champion"),
    )
