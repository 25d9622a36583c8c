"""`shoprank <step>`: one command per pipeline step.

Each command reads params.yaml into typed settings, resolves paths and calls one
library function; dvc.yaml stages and Airflow tasks call these same commands.
Heavy libraries are imported inside the commands so that `--help` stays instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from shoprank import cli_text as text
from shoprank.cli_base import ParamsOpt, _fail, _params, app
from shoprank.compute import ComputeError


@app.command()
def raw(params: ParamsOpt = None) -> None:
    """The pipeline's first step: the raw batch from data.source (simulate, or import your logs)."""
    from shoprank.data.importer import ImportFailed
    from shoprank.data.raw import produce_raw
    from shoprank.privacy import PseudonymKeyError

    p = _params(params)
    try:
        result = produce_raw(p)
    except (ImportFailed, KeyError, PseudonymKeyError) as exc:
        _fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), 2)
    if result["source"] == "simulate":
        typer.echo(f"simulated profile {result['profile']} into {p.paths.raw}")
        text.summary(result["summary"])
    else:
        text.imported(result["imported"], p.paths.raw)


@app.command()
def simulate(
    profile: Annotated[
        str | None, typer.Option(help="Size profile from params.yaml (tiny, default, large, xl).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: paths.raw).")] = None,
    seed: Annotated[int | None, typer.Option(help="Override simulate.seed.")] = None,
    params: ParamsOpt = None,
) -> None:
    """Simulate a marketplace: contract tables in OUT, ground truth in OUT/truth."""
    from shoprank.data.raw import shoppers_of, simulate_batch
    from shoprank.privacy import PseudonymKeyError

    p = _params(params)
    out = out or p.paths.raw
    try:
        summary = simulate_batch(p.simulate, out, shoppers_of(p), profile, seed)
    except KeyError as exc:
        _fail(str(exc.args[0]), 2)
    except PseudonymKeyError as exc:
        _fail(str(exc), 2)
    typer.echo(f"wrote {out} (profile {profile or p.simulate.profile}); every table conforms to the contract")
    text.summary(summary)


@app.command("import")
def import_(
    out: Annotated[Path | None, typer.Option(help="Output folder (default: paths.raw).")] = None,
    params: ParamsOpt = None,
) -> None:
    """Build the contract tables from a shop's CSV or Parquet files (see `import` in params.yaml)."""
    from shoprank.data.importer import ImportFailed
    from shoprank.data.raw import import_batch
    from shoprank.privacy import PseudonymKeyError

    p = _params(params)
    out = out or p.paths.raw
    try:
        result = import_batch(p, out)
    except (ImportFailed, PseudonymKeyError) as exc:
        _fail(str(exc))
    text.imported(result, out)


@app.command()
def check(
    folder: Annotated[Path, typer.Argument(help="Folder of contract tables.")],
) -> None:
    """Check every contract table in FOLDER against the data contract."""
    from shoprank.data.io import read_table
    from shoprank.data.schema import TABLES, ContractError

    found = [n for n in TABLES if (folder / f"{n}.parquet").is_file()]
    if not found:
        _fail(f"{folder}: no contract tables ({', '.join(f'{n}.parquet' for n in TABLES)})")
    bad = 0
    for name in found:
        try:
            df = read_table(folder, name)
            typer.echo(f"{name}: {len(df):,} rows conform")
        except ContractError as exc:
            bad += 1
            typer.echo(str(exc), err=True)
    if bad:
        raise typer.Exit(1)


@app.command()
def validate(
    batch: Annotated[Path | None, typer.Option(help="Batch folder to validate (default: paths.raw).")] = None,
    docs: Annotated[
        Path | None, typer.Option(help="Where to write the HTML Data Docs (default: beside the result).")
    ] = None,
    feedback: Annotated[
        bool,
        typer.Option(help="Append the ingested feedback impressions (paths.feedback/impressions.parquet)."),
    ] = True,
    params: ParamsOpt = None,
) -> None:
    """Validate a batch (plus ingested feedback) with Great Expectations; pass it on or quarantine it."""
    from shoprank.feedback.ingest import IMPRESSIONS_FILE
    from shoprank.quality import ValidationFailed, validate_batch

    p = _params(params)
    extra = p.paths.feedback / IMPRESSIONS_FILE if feedback else None
    try:
        report = validate_batch(
            batch or p.paths.raw, p.validate_, p.paths.validated, p.paths.quarantine, docs, extra
        )
    except ValidationFailed as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    typer.echo(report.summary())


@app.command("ingest-feedback")
def ingest_feedback(params: ParamsOpt = None) -> None:
    """Turn the service's feedback log into impressions (bad records to quarantine) for `validate`."""
    from shoprank.feedback.ingest import ingest_feedback as run_ingest
    from shoprank.privacy import read_erased

    p = _params(params)
    try:
        report = run_ingest(
            p.paths.feedback,
            p.paths.raw,
            p.paths.quarantine,
            p.feedback.min_new_impressions,
            read_erased(p.paths.erasure),
            p.validate_.max_position,
        )
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    typer.echo(report.summary())


def _validated(p) -> Path:
    from shoprank.quality import current_batch

    try:
        return current_batch(p.paths.validated)
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
        raise


@app.command()
def features(params: ParamsOpt = None) -> None:
    """Compute time-stamped item, user and query features (with text embeddings) of the current batch."""
    from shoprank.features import build_features, text_embedder

    p = _params(params)
    try:
        # FileNotFoundError: text.encoder adapted before `shoprank adapt` ran
        embed = text_embedder(p.text, p.compute)
        report = build_features(_validated(p), p.paths.features, p.features, embed)
    except (FileNotFoundError, ComputeError) as exc:
        _fail(str(exc), 2)
    for view, rows in report["rows"].items():
        typer.echo(f"{view:14s} {rows:>10,} rows")


@app.command()
def adapt(params: ParamsOpt = None) -> None:
    """Fine-tune the text encoder on the training split's clicks; compare it with the stock one."""
    from shoprank.text.adapt import METRICS_FILE, run_adapt

    p = _params(params)
    try:
        r = run_adapt(p)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc), 2)
    if r["adapted"] is None:
        typer.echo(f"not adapted: {r['reason']}; the stock encoder serves (metrics: {p.paths.metrics})")
        return
    typer.echo(f"{'encoder':8s} {'recall@10':>10s} {'mrr':>8s}   ({r['pairs']['scored']:,} validation pairs)")
    for name in ("stock", "adapted"):
        typer.echo(f"{name:8s} {r[name]['recall@10']:10.4f} {r[name]['mrr']:8.4f}")
    t = r["training"]
    typer.echo(
        f"trained on {t['pairs']:,} pairs, {t['steps']} steps in {t['train_seconds']:.0f}s on {t['device']} "
        f"-> {p.text.adapted_dir} (metrics: {Path(p.paths.metrics) / METRICS_FILE})"
    )


@app.command()
def materialize(params: ParamsOpt = None) -> None:
    """Apply the Feast repository and load the online store incrementally."""
    from shoprank.features import materialize as run_materialize

    p = _params(params)
    report = run_materialize(p.features, p.paths.features)
    typer.echo(json.dumps(report, indent=2, default=str))


@app.command("training-set")
def training_set(params: ParamsOpt = None) -> None:
    """Build the training table: point-in-time join of features onto impressions (features.offline_engine)."""
    from shoprank.data.staged import clean_stale, explained
    from shoprank.features import training_set as run_training_set
    from shoprank.privacy import read_erased
    from shoprank.training.train import training_set_path

    p = _params(params)
    out = training_set_path(p)
    clean_stale(out.parent)  # what a killed run left under a temporary name
    try:
        with explained(out, "paths.training", "shoprank training-set"):
            report = run_training_set(
                p.features,
                _validated(p),
                p.paths.features,
                out,
                erased=read_erased(p.paths.erasure),
                compute=p.compute,
            )
    except ComputeError as exc:
        _fail(str(exc), 2)
    typer.echo(f"training set: {report['rows']:,} rows, {len(report['columns'])} columns -> {report['path']}")


@app.command()
def train(
    candidate: Annotated[
        list[str] | None, typer.Option(help="Train only these (repeatable); default: train.candidates.")
    ] = None,
    params: ParamsOpt = None,
) -> None:
    """Train the candidates (BERT-CTR, the no-text ablation, LightGBM, popularity) on the training set."""
    from shoprank.training.train import run_train

    p = _params(params)
    try:
        report = run_train(p, tuple(candidate) if candidate else None)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc), 2)
    # one summary per candidate, the metric of its dvc.yaml stage train@<name>; the neural candidates'
    # DVCLive curves are in <paths.metrics>/train/<name>/
    for name, r in report["candidates"].items():
        out = Path(p.paths.metrics) / "candidates" / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": report["rows"], **r}, indent=2) + "\n")
        rate = f"{r['impressions_per_s']:>9,} impressions/s"
        typer.echo(f"{name:10s} {r['seconds']:8.1f} s  {rate}  -> {r['artifact']}")


@app.command()
def evaluate(params: ParamsOpt = None) -> None:
    """Evaluate every candidate on the time-based test split; write metrics/evaluate.json."""
    from shoprank.evaluation.step import run_evaluate

    p = _params(params)
    try:
        report = run_evaluate(p)
    except (FileNotFoundError, ComputeError) as exc:
        _fail(str(exc), 2)
    text.evaluation(report, p.select.metric)


@app.command()
def drift(params: ParamsOpt = None) -> None:
    """Compare the test split with the training split: inputs, the winner's scores, outcomes per day."""
    from shoprank.monitoring.step import run_drift

    p = _params(params)
    try:
        report = run_drift(p)
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    for name, d in {**report["inputs"], "score": report["scores"]}.items():
        psi = "-" if d["psi"] is None else f"{d['psi']:.4f}"
        typer.echo(f"{name:28s} psi {psi:>8s}  {d['status']}")
    for side in ("reference", "current"):
        r = report[side]
        rates = "  ".join(f"{k} {r[k]:.4f}" for k in ("ctr", "purchase_rate") if k in r)
        typer.echo(f"{side:9s} ({r['split']}, {r['rows']:,} rows)  {rates}")
    n = report["summary"]
    typer.echo(f"drift: {n['alerts']} alert(s), {n['warnings']} warning(s) over {n['checked']} checked")


@app.command()
def select(params: ParamsOpt = None) -> None:
    """Promote the evaluation's winner to champion if it beats the current one by the margin."""
    from shoprank.config import params_path
    from shoprank.selection import run_select

    p = _params(params)
    try:
        result = run_select(p, params or params_path(), Path(p.paths.metrics) / "evaluate.json")
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    typer.echo(("promoted: " if result.promoted else "kept the champion: ") + result.reason)


@app.command()
def understand(params: ParamsOpt = None) -> None:
    """Train the query-intent and product-attribute heads on the text embeddings (simulator labels),
    and the query-category head on the training split's clicks."""
    from shoprank.models.understanding import ARTIFACT, METRICS_FILE
    from shoprank.training.query_category import run_understand_step

    p = _params(params)
    try:
        report = run_understand_step(p)
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    text.understanding(report, Path(p.paths.models) / ARTIFACT, Path(p.paths.metrics) / METRICS_FILE)


@app.command()
def package(
    force: Annotated[bool, typer.Option(help="Rebuild even if this champion is already packaged.")] = False,
    params: ParamsOpt = None,
) -> None:
    """Package the champion (model, query encoder, indexes, item tables) into the BentoML model store."""
    from shoprank.cli_ops import package_champion

    package_champion(_params(params), force)


from shoprank import cli_ops  # noqa: E402, F401  (the operations' commands join the app)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
