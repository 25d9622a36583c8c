"""The promotion gate: with ``experiment.gate_promotion``, `shoprank select` promotes a challenger
only when the online experiment found it better.

The evidence is ``<paths.metrics>/experiment.json`` (written by `shoprank experiment`): it must
be the report of the configured experiment, show no sample-ratio mismatch, and give the
decision ``challenger better`` to an arm whose model is the candidate about to be promoted.
"""

from __future__ import annotations

import json
from pathlib import Path

from shoprank.config_experiment import Experiment
from shoprank.experiments.stats import CHALLENGER_BETTER


def refusal(report_file: Path, experiment: Experiment, candidate: str) -> str:
    """Why the experiment does not let ``candidate`` be promoted ('' when it does)."""
    if not experiment.active:
        return "experiment.gate_promotion is on but no experiment is configured (experiment.name is empty)"
    if not report_file.is_file():
        return f"no experiment report {report_file} (run `shoprank experiment`)"
    report = json.loads(report_file.read_text())
    if report.get("experiment") != experiment.name:
        return f"{report_file} reports experiment {report.get('experiment')!r}, not {experiment.name!r}"
    arms = [name for name, arm in report.get("arms", {}).items() if arm.get("model") == candidate]
    if not arms:
        return f"no arm of experiment {experiment.name!r} serves {candidate}"
    if (report.get("srm") or {}).get("flagged"):
        return f"experiment {experiment.name!r} has a sample-ratio mismatch: its comparison is not trusted"
    decisions = {name: report.get("decisions", {}).get(name, "none") for name in arms}
    if CHALLENGER_BETTER in decisions.values():
        return ""
    said = ", ".join(f"{name}: {d}" for name, d in decisions.items())
    return f"experiment {experiment.name!r} has not found {candidate} better ({said})"
