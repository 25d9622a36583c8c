"""deploy/'s Grafana dashboard and Prometheus alert rules read only series the service exports."""

from __future__ import annotations

import ast
import json
import re

import pytest
import yaml

from tests.conftest import ROOT

METRICS_MODULE = ROOT / "src" / "shoprank" / "ranking" / "metrics.py"
DASHBOARD = ROOT / "deploy" / "grafana" / "shoprank.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SCRAPE_SERIES = {"up"}  # what Prometheus records of every scrape itself
# the series each metric type exposes (prometheus_client drops a Counter's _total and adds it back)
SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
    "Gauge": ("",),
}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
# label lists of a grouping or matching clause, label matchers, range selectors and strings name no series
CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
NOT_NAMES = re.compile(r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]')
IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")


def metrics() -> dict[str, set[str]]:
    """Each metric the module defines (Counter, Gauge, Histogram, Summary) -> the series it exports."""
    out: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(METRICS_MODULE.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SUFFIXES:
            name = node.args[0]
            assert isinstance(name, ast.Constant) and isinstance(name.value, str)
            base = name.value.removesuffix("_total") if node.func.id == "Counter" else name.value
            out[name.value] = {base + suffix for suffix in SUFFIXES[node.func.id]}
    return out


def exported_series() -> set[str]:
    return set().union(*metrics().values())


def series_of(expr: str) -> set[str]:
    """The series names a PromQL expression selects (function names and keywords left out)."""
    bare = NOT_NAMES.sub(" ", CLAUSE.sub(" ", expr))
    return {m[1] for m in IDENTIFIER.finditer(bare) if not m[2] and m[1].lower() not in PROMQL_WORDS}


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_parser_sees_series_not_functions_labels_or_ranges():
    expr = (
        'histogram_quantile(0.95, sum by (le, endpoint) (rate(a_bucket{endpoint=~"x|y"}[5m])))'
        " / on(job) group_left(version) b_total offset 1h > 0 and (c or vector(0))"
    )
    assert series_of(expr) == {"a_bucket", "b_total", "c"}
    assert {"shoprank_requests_total", "shoprank_request_seconds_bucket", "shoprank_model_info"} <= (
        exported_series()
    )


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_expression_reads_series_the_service_exports(source):
    exprs = dashboard_exprs() if source == "dashboard" else [r["expr"] for r in alert_rules()]
    known = exported_series() | SCRAPE_SERIES
    assert exprs
    for expr in exprs:
        names = series_of(expr)
        assert names, f"{source}: no series in {expr!r}"
        assert names <= known, f"{source}: {sorted(names - known)} not exported by {METRICS_MODULE.name}"


def test_the_dashboard_covers_every_metric_of_the_service():
    read = {name for expr in dashboard_exprs() for name in series_of(expr)}
    unread = sorted(metric for metric, series in metrics().items() if not series & read)
    assert not unread, f"metrics without a panel: {unread}"


def test_every_alert_is_complete():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule.get("expr") and rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
    prometheus = yaml.safe_load(PROMETHEUS.read_text())
    assert prometheus["rule_files"] == [ALERTS.name]
    assert [job["job_name"] for job in prometheus["scrape_configs"]] == ["shoprank"]
