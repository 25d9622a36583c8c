"""What the CLI prints for a step's result: the tables and lines a person reads after each command."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from shoprank.logs import log

logger = logging.getLogger("shoprank.cli")


def summary(summary: dict) -> None:
    """A simulated batch's shape."""
    rows = ", ".join(f"{k} {v:,}" for k, v in summary["rows"].items())
    typer.echo(f"rows: {rows} ({summary['requests']:,} requests)")
    typer.echo(f"overall CTR: {summary['ctr']:.4f}   purchase rate: {summary['purchase_rate']:.4f}")
    pos = summary["ctr_by_position"]
    typer.echo("CTR by position: " + "  ".join(f"{k}:{v:.3f}" for k, v in pos.items()))
    typer.echo(
        f"new items: {summary['new_item_share']:.1%} of the catalog, "
        f"{summary['new_item_impression_share']:.1%} of impressions"
    )
    typer.echo("intents: " + ", ".join(f"{k} {v:.1%}" for k, v in summary["intents"].items()))
    typer.echo(
        f"Bayes-optimal AUC of the logged clicks: {summary['bayes_auc']:.4f} "
        f"(expected over click draws: {summary['bayes_auc_expected']:.4f})"
    )


def imported(result, out: Path) -> None:
    """What an import wrote and dropped."""
    for path in result.paths:
        log(logger, "imported", path=str(path))
    tables = result.report["tables"]
    typer.echo(
        f"imported {len(result.paths)} table(s) into {out}: "
        + ", ".join(f"{name} {t['rows_written']} rows" for name, t in tables.items())
    )
    shape = result.report["impressions"]
    typer.echo(f"{shape['requests']} requests, {shape['clicks']} clicks, CTR {shape['ctr']:.2%}")
    dropped = {name: t["rows_dropped"] for name, t in tables.items() if t["rows_dropped"]}
    if dropped:
        typer.echo(f"dropped invalid rows: {dropped} (reasons in {result.report_path})")


def evaluation(report: dict, metric: str) -> None:
    """The headline metrics of every candidate, what could not be computed, the winner."""
    from shoprank.evaluation.evaluate import HEADLINE

    keys = HEADLINE
    typer.echo(f"{'candidate':10s} " + " ".join(f"{k[:12]:>12s}" for k in keys))
    for name, m in report["candidates"].items():
        typer.echo(f"{name:10s} " + " ".join(f"{m[k]:12.4f}" if k in m else f"{'-':>12s}" for k in keys))
    for key, why in report["not_computed"].items():
        typer.echo(f"  {key}: not computed, {why}")
    typer.echo(f"winner by {metric}: {report['winner']}")


def understanding(report: dict, out: Path, scores_file: Path) -> None:
    """The query-understanding heads' held-out scores, or why there are none, and the attributes filled."""
    filled = report.get("attributes")
    if filled:
        head = f"{'filled column':14s} {'input':>9s} {'accuracy':>9s} {'macro_f1':>9s} {'filled':>7s}"
        typer.echo(head + "   (held out)")
        for column, r in filled["columns"].items():
            if not r["trained"]:
                typer.echo(f"{column:14s} not filled: {r['reason']}")
                continue
            share = "-" if r["filled_share"] is None else f"{r['filled_share']:.1%}"
            h = r["held_out"]
            typer.echo(
                f"{column:14s} {r['method']:>9s} {h['accuracy']:9.4f} {h['macro_f1']:9.4f} {share:>7s}"
            )
    if not report["trained"]:
        typer.echo(f"no heads: {report['reason']}; `package` ships without them -> {out}")
        return
    scores = report["scores"] or {}
    typer.echo(f"{'head':14s} {'accuracy':>9s} {'macro_f1':>9s}   (held out)")
    for head, s in scores.items():
        typer.echo(f"{head:14s} {s['accuracy']:9.4f} {s['macro_f1']:9.4f}")
    rows = report["rows"]
    typer.echo(
        f"fitted on {rows['queries']:,} labelled queries and {rows['items']:,} items -> {out} "
        f"(scores: {scores_file})"
    )


def _interval(e: dict | None, digits: int = 4) -> str:
    """``value [low, high]``, or ``-`` for what could not be computed."""
    if not e or e.get("value") is None:
        return "-"
    if e.get("low") is None:
        return f"{e['value']:.{digits}f}"
    return f"{e['value']:.{digits}f} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"


def experiment(report: dict, out: Path) -> None:
    """An experiment's report: the arms, the differences, the split check, the decisions."""
    s = report["settings"]
    level = f"{1 - s['alpha']:.0%}"
    typer.echo(
        f"experiment {report['experiment']} ({s['mode']}, by {s['unit']}; sequential test on "
        f"{'interleaving wins' if s['mode'] == 'interleave' else s['metric']}, alpha {s['alpha']:g}): "
        f"{report['requests']:,} requests"
        + (f", {report['first_ts']} to {report['last_ts']}" if report["requests"] else "")
    )
    if report["note"]:
        typer.echo(f"  {report['note']}")
    if s["mode"] == "ab":
        _ab_arms(report, level)
    else:
        _interleaving(report, level)
    srm = report["srm"]
    if srm and srm["p_value"] is not None:
        verdict = "MISMATCH: the split is broken, do not trust the comparison" if srm["flagged"] else "ok"
        units = ", ".join(
            f"{a} {n:,} (expected {srm['expected'][a]:,.0f})" for a, n in srm["observed"].items()
        )
        typer.echo(
            f"sample ratio: units {units}: chi2 {srm['chi2']:.2f}, p {srm['p_value']:.3g} "
            f"(flagged below {srm['alpha']:g}): {verdict}"
        )
    for arm, t in report["sequential"].items():
        at = t["decided_at"]
        when = f" after {at['requests']:,} requests ({at['impressions']:,} impressions)" if at else ""
        typer.echo(f"decision for {arm}: {t['decision']}{when}; always-valid p {t['p_value']:.3g}")
    for reason, aside in report["set_aside"].items():
        typer.echo(f"set aside ({reason}): {aside['records']:,} record(s) -> {aside['path']}")
    typer.echo(f"report -> {out}")


def _ab_arms(report: dict, level: str) -> None:
    keys = ("ctr", "clicks_per_request", "purchases_per_request", "revenue_per_request")
    typer.echo(
        f"{'arm':12s} {'model':12s} {'share':>5s} {'units':>8s} {'requests':>9s} {'impr.':>9s} {'clicks':>7s}"
    )
    for name, a in report["arms"].items():
        typer.echo(
            f"{name:12s} {a['model']:12s} {a['share']:5.2f} {a['units']:8,} {a['requests']:9,} "
            f"{a['impressions']:9,} {a['clicks']:7,}"
        )
    champion = next(n for n, a in report["arms"].items() if a["role"] == "champion")
    columns = [(n, a) for n, a in report["arms"].items()]
    columns += [(f"{n} - {champion}", d) for n, d in report["differences"].items()]
    typer.echo(f"{level + ' intervals':22s}" + "".join(f"{n:>30s}" for n, _ in columns))
    for key in keys:
        if key in report["arms"][champion]:
            typer.echo(f"{key:22s}" + "".join(f"{_interval(c.get(key)):>30s}" for _, c in columns))


def _interleaving(report: dict, level: str) -> None:
    i = report["interleaving"]
    for name, a in report["arms"].items():
        typer.echo(
            f"{name:12s} {a['model']:12s} placed {a['placed']:9,}  "
            f"credited clicks {a['clicks']:7,}  wins {a['wins']:7,}"
        )
    typer.echo(
        f"requests with credited clicks {i['requests_with_credited_clicks']:,} (ties {i['ties']:,}); "
        f"preference for the challenger {_interval(i['preference'])} ({level})"
    )


def catalog_update(result: dict) -> int:
    """Where a file's catalogue rows went and every rejected row (the first 20) with its reasons;
    the exit code: 1 when a row was rejected."""
    from shoprank.data.updates import describe

    if result["file"] is not None:
        typer.echo(
            f"{result['accepted']} row(s) ({result['listed']} listed or changed, {result['delisted']} "
            f"delisted) dropped into {result['file']}; the service applies them on its next refresh"
        )
    if result["ignored_columns"]:
        typer.echo(f"ignored column(s), neither the contract's nor declared: {result['ignored_columns']}")
    rejected = result["rejected"]
    if rejected:
        typer.secho(f"{len(rejected)} row(s) rejected, kept in {result['quarantine']}:", fg="red", err=True)
        for r in rejected[:20]:
            typer.echo(f"  {describe(r)}", err=True)
        if len(rejected) > 20:
            typer.echo(f"  and {len(rejected) - 20} more", err=True)
    return 1 if rejected else 0
