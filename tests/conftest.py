"""Shared fixtures: the real params.yaml, shrunk to the tiny profile for speed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
import yaml

from shoprank.config import Params, load_params
from shoprank.privacy import Shoppers

if TYPE_CHECKING:
    from tests.serving_fixtures import Server, ServingEnv

ROOT = Path(__file__).resolve().parents[1]
# the pseudonym key of tests that call a step's function directly (the CLI reads paths.secrets)
SHOPPERS = Shoppers(b"a pseudonym key for the tests, 32+ chars")
os.environ.setdefault("SHOPRANK_NO_PROGRESS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


SKIP_SERVERS_ENV = "SHOPRANK_SKIP_SERVERS"


def missing_server(what: str) -> NoReturn:
    """A test's server or browser is not installed: a failure that says how to install it.

    With ``SHOPRANK_SKIP_SERVERS=1`` the test is skipped instead (a machine where the
    servers cannot be installed); CI and `make test` never set it, so nothing is skipped there.
    """
    if os.environ.get(SKIP_SERVERS_ENV) == "1":
        pytest.skip(f"{what} ({SKIP_SERVERS_ENV}=1)")
    pytest.fail(
        f"{what}: run `make servers` (Debian/Ubuntu: apt-get install redis-server postgresql chromium "
        f"chromium-driver), or set {SKIP_SERVERS_ENV}=1 to skip the tests that need them",
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def _declared_inputs() -> Iterator[None]:
    """Loading params declares their windows and shop columns: each test leaves them as it found them."""
    from shoprank.inputs.declare import kept

    with kept():
        yield


@pytest.fixture(scope="session")
def params() -> Params:
    """The project's own params.yaml (tests shrink it; they never keep a second copy)."""
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def tiny_sim(params):
    """One tiny simulated marketplace shared by the whole session (read-only)."""
    from shoprank.data.simulator import simulate

    return simulate(params.simulate, "tiny")


@pytest.fixture(scope="session")
def tiny_batch(tiny_sim, tmp_path_factory) -> Path:
    """The tiny marketplace written as a batch folder (contract tables + truth/)."""
    from shoprank.data.simulator import write_simulation

    out = tmp_path_factory.mktemp("tiny_batch")
    write_simulation(tiny_sim, out)
    return out


def tiny_raw_params(root: Path | None = None) -> dict:
    """params.yaml as a dict on the tiny profile with small models (for a test's own params file).

    With ``root``, every path, the embedding cache and a private copy of the Feast repo go
    under it, so the run leaves the project's data and feature store alone.
    """
    from shoprank.features.store import copy_repo

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["simulate"]["profile"] = "tiny"
    raw["train"].update({"max_epochs": 2, "batch_size": 512, "mlp": [32], "d": 16})
    raw["lightgbm"]["rounds"] = 50
    raw["adapt"].update({"max_pairs": 256, "eval_pairs": 128, "epochs": 1})
    if root is not None:
        raw["paths"] = {k: str(root / v) for k, v in raw["paths"].items()}
        raw["text"].update(
            {"cache_dir": str(root / "cache"), "encoders_dir": str(root / "models" / "encoders")}
        )
        # the Feast repo reads its tables from ../data/features: a copy beside root/data
        raw["features"]["repo"] = str(copy_repo(ROOT / "features", root))
    return raw


@pytest.fixture(scope="session")
def serving_env(tmp_path_factory) -> ServingEnv:
    """The tiny champion packaged into a private BentoML store, once for every serving test module."""
    from tests.serving_fixtures import package_tiny_champion

    return package_tiny_champion(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="session")
def live_server(serving_env) -> Iterator[Server]:
    """The service (uvicorn, auth off) on the packaged tiny champion."""
    from tests.serving_fixtures import Server

    server = Server(serving_env.env(), serving_env.root).start()
    yield server
    server.stop()


def project_files(*pathspecs: str) -> list[Path]:
    """The project's own files under ``pathspecs``: tracked or new, never what git ignores."""
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *pathspecs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [ROOT / name for name in sorted(set(listed)) if (ROOT / name).is_file()]


def step(name: str, params_file: Path | str) -> str:
    """`shoprank <name> --params <params_file>` in process; its output, or a failure showing it."""
    from typer.testing import CliRunner

    from shoprank.cli import app

    result = CliRunner().invoke(app, [name, "--params", str(params_file)])
    assert result.exit_code == 0, f"{name} failed:\n{result.output}"
    return result.output
