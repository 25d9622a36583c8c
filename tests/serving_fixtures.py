"""Fixtures of the serving tests: a tiny champion packaged into a private BentoML store, live servers.

:func:`package_tiny_champion` runs the tiny pipeline through the CLI (simulate .. select)
into a temporary folder, then ``shoprank package`` with ``BENTOML_HOME`` in that folder, so
the user's model store and ./data are never touched. :class:`Server` starts the
service's ASGI app under uvicorn (or ``bentoml serve``) in a subprocess on a free port.
The session fixtures over them, ``serving_env`` and ``live_server``, are in tests/conftest.py:
one packaged model and one server for every serving test module.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from tests.conftest import ROOT, tiny_raw_params

VENV_BIN = Path(sys.executable).parent


def simulated_user(pseudonym_: str, secrets_dir: Path | str, n_users: int = 10_000) -> str:
    """The simulator's own id (``user_000042``, what a front end sends) of a pseudonym in the tables."""
    from shoprank.privacy import load_key, pseudonym

    key = load_key(secrets_dir)
    for i in range(n_users):
        if pseudonym(f"user_{i:06d}", key) == pseudonym_:
            return f"user_{i:06d}"
    raise LookupError(f"{pseudonym_} is no simulated shopper's pseudonym under the key in {secrets_dir}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServingEnv:
    root: Path
    params_file: Path
    raw: dict
    bentoml_home: Path
    bundle: Path
    tag: str

    def package(self) -> ServingEnv:
        """`shoprank package` of the champion into this environment's own BentoML store."""
        done = subprocess.run(
            [str(VENV_BIN / "shoprank"), "package", "--params", str(self.params_file)],
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "packaged" in done.stdout, done.stdout
        self.tag = done.stdout.split(" as ")[1].split()[0]
        name, version = self.tag.split(":")
        self.bundle = self.bentoml_home / "models" / name / version
        assert (self.bundle / "manifest.json").is_file()
        return self

    @classmethod
    def packaged_ranker(cls, root: Path, params_file: Path, raw: dict):
        """(environment, params, ranker): the champion packaged into ``root``'s own BentoML store
        and served in process, with no feature refresh while the tests run."""
        from shoprank.config import load_params
        from shoprank.ranking.ranker import Ranker

        env = cls(root, params_file, raw, root / "bentoml", Path(), "").package()
        params = load_params(params_file)
        settings = params.serve.model_copy(update={"feature_ttl_s": 600.0})
        return env, params, Ranker(env.bundle, params, settings=settings)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPRANK_", "PROMETHEUS_MULTIPROC"))}
        env.update(
            {
                "SHOPRANK_PARAMS": str(self.params_file),
                "BENTOML_HOME": str(self.bentoml_home),
                "BENTOML_DO_NOT_TRACK": "True",
                "SHOPRANK_MODEL": str(self.bundle),
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "SHOPRANK_NO_PROGRESS": "1",
                # this checkout's sources, whichever one the environment has installed
                "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            }
        )
        env.update(extra)
        return env

    def pseudonym(self, user_id: str) -> str:
        """What the tables, the online store and the log call the shopper ``user_id``."""
        from shoprank.privacy import load_key, pseudonym

        return pseudonym(user_id, load_key(self.raw["paths"]["secrets"]))

    def user_id(self, pseudonym_: str) -> str:
        """The simulated shopper's own id of a pseudonym the tables hold."""
        return simulated_user(pseudonym_, self.raw["paths"]["secrets"])

    @property
    def feedback_dir(self) -> Path:
        return Path(self.raw["paths"]["feedback"])

    def params_variant(self, name: str, **features: str) -> Path:
        """A copy of the params file with ``features`` settings replaced (e.g. an unreachable store)."""
        raw = yaml.safe_load(self.params_file.read_text())
        raw["features"].update(features)
        path = self.root / f"params-{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path


@dataclass
class Server:
    env: dict[str, str]
    cwd: Path
    bentoml: bool = False
    log_dir: Path | None = None  # default: cwd
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> Server:
        self.port = free_port()
        if self.bentoml:  # as `make serve` runs it: the supervisor, on serve.host (127.0.0.1)
            cmd = [sys.executable, "-m", "shoprank.ranking.launch", "--port", str(self.port)]
        else:
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "shoprank.ranking.http:app_from_env"]
            cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self.log_path = (self.log_dir or self.cwd) / f"server-{self.port}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the subprocess owns it
        self.proc = subprocess.Popen(
            cmd, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = httpx.get(self.url + "/ready", timeout=2)
                if r.status_code == 200 and r.json().get("ready"):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, no shutdown hooks."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def processes(self) -> list:
        """The server's process and every process below it (BentoML's workers included)."""
        import psutil

        top = psutil.Process(self.proc.pid) if self.proc is not None else None
        return [top, *top.children(recursive=True)] if top is not None else []

    def post(self, path: str, body=None, **kw) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=30, **kw)

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kw)


def package_tiny_champion(tmp: Path) -> ServingEnv:
    """The tiny pipeline (simulate .. understand .. select) by the CLI, then `shoprank package`."""
    raw = tiny_raw_params(tmp)
    # the production champion kind, and quick to train
    raw["train"]["candidates"] = {"bert_ctr": raw["train"]["candidates"]["bert_ctr"]}
    params_file = tmp / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    # understand after the training set: its filled attributes and heads are what train, evaluate
    # and `package` read
    steps = (
        "simulate",
        "validate",
        "features",
        "materialize",
        "training-set",
        "understand",
        "train",
        "evaluate",
    )
    for step in steps:
        result = runner.invoke(app, [step, "--params", str(params_file)])
        assert result.exit_code == 0, f"{step} failed:\n{result.output}"
    result = runner.invoke(app, ["select", "--params", str(params_file)])
    assert result.exit_code == 0 and "promoted" in result.output, result.output
    home = tmp / "bentoml"
    return ServingEnv(tmp, params_file, raw, home, Path(), "").package()


def logged_queries(env: ServingEnv) -> list[str]:
    """Normalised queries of the tiny logs: the online store holds their embeddings."""
    table = pd.read_parquet(Path(env.raw["paths"]["features"]) / "query_text.parquet")
    return sorted(table["query_text"].astype(str))
