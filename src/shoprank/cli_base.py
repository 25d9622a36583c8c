"""The ``shoprank`` command's app and what every command shares (part of shoprank.cli)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from shoprank.config import ParamsError, load_params
from shoprank.logs import setup_logging

app = typer.Typer(
    help="shoprank: language-model-powered e-commerce search ranking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
logger = logging.getLogger("shoprank.cli")

ParamsOpt = Annotated[
    Path | None, typer.Option("--params", help="params.yaml to read (default: ./params.yaml).")
]


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    setup_logging("DEBUG" if verbose else None)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _params(path: Path | None):
    try:
        return load_params(path)
    except ParamsError as exc:
        _fail(str(exc), 2)
