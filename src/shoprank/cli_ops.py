"""`shoprank <operation>`: commands that act on a deployment rather than run a pipeline step
(forgetting a shopper, catalogue updates, reading an experiment, rolling back; part of shoprank.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shoprank import cli_text as text
from shoprank.cli_base import ParamsOpt, _fail, _params, app


@app.command()
def forget(
    user: Annotated[str, typer.Argument(help="The shopper's own user id, as the shop knows it.")],
    params: ParamsOpt = None,
) -> None:
    """Erase one shopper from the feedback log, tables, features and online store, and keep them out."""
    from shoprank.privacy import PseudonymKeyError
    from shoprank.privacy.forget import forget as run_forget

    p = _params(params)
    try:
        done = run_forget(user, p)
    except PseudonymKeyError as exc:
        _fail(str(exc), 2)
    typer.echo(done.summary())


@app.command("catalog-update")
def catalog_update(
    file: Annotated[Path, typer.Argument(help="Catalog rows: .jsonl or .parquet.")], params: ParamsOpt = None
) -> None:
    """Check FILE's rows (new, changed, delisted items); the valid ones go where the service applies them."""
    from shoprank.data.updates import UpdateError, submit

    try:
        result = submit(file, _params(params).paths.catalog_updates)
    except UpdateError as exc:
        _fail(str(exc), 2)
    raise typer.Exit(text.catalog_update(result))  # 1 when a row was rejected (and quarantined)


@app.command()
def experiment(params: ParamsOpt = None) -> None:
    """Read the online experiment of params.yaml from the feedback log: arms, split check, decision."""
    from shoprank.experiments.step import NoExperiment, report_path, run_experiment

    p = _params(params)
    try:
        report = run_experiment(p)
    except (NoExperiment, FileNotFoundError) as exc:
        _fail(str(exc), 2)
    text.experiment(report, report_path(p))


@app.command()
def rollback(params: ParamsOpt = None) -> None:
    """Restore the previous champion and package it: a running service switches to it on its next check."""
    from shoprank.selection import rollback as run_rollback

    p = _params(params)
    try:
        record = run_rollback(Path(p.paths.models))
    except ValueError as exc:
        _fail(str(exc), 2)
    typer.echo(f"champion is {record['candidate']} {record['version']} again")
    package_champion(p, force=True)


def package_champion(p, force: bool) -> None:
    from shoprank.ranking.bundle import PackageError
    from shoprank.ranking.bundle import package as run_package

    try:
        from shoprank.text import load_encoder

        # recorded by key (serving must embed queries the same way) and exported to ONNX for serving
        result = run_package(p, force=force, encoder=load_encoder(p.text, device="cpu"))
    except (PackageError, FileNotFoundError) as exc:
        _fail(str(exc), 2)
    m = result["manifest"]
    # what is packaged, for DVC (the stage's output) and for `make serve`: the store lives outside the repo
    record = {"tag": result["tag"], "version": m["version"], "candidate": m["champion"]["candidate"]}
    out = Path(p.paths.models) / "package.json"
    out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    state = "packaged" if result["created"] else "already packaged"
    typer.echo(
        f"{state} {m['champion']['candidate']} {m['version']} as {result['tag']} "
        f"({m['items']:,} items, intent model: {'yes' if m['understanding'] else 'no'}) -> {result['path']}"
    )
