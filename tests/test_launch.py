"""`make serve`'s supervisor: a stop signal ends the server and the workers it started in
sessions of their own (as BentoML's process manager does), and `make serve` binds
``serve.host``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT

# a stand-in server: two workers, each in a new session, their pids written for the test
SERVER = textwrap.dedent(
    """
    import subprocess, sys, time
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    workers = [subprocess.Popen(sleep, start_new_session=True) for _ in range(2)]
    open(sys.argv[1], "w").write(" ".join(str(w.pid) for w in workers))
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_the_server_and_the_workers_in_their_own_sessions(tmp_path: Path, stop):
    pids = tmp_path / "pids"
    supervisor = [
        sys.executable,
        "-c",
        "import sys; from shoprank.ranking.launch import supervise; "
        f"sys.exit(supervise([sys.executable, '-c', {SERVER!r}, {str(pids)!r}], grace_s=5, poll_s=0.1))",
    ]
    proc = subprocess.Popen(supervisor, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(p) for p in pids.read_text().split()]
        assert all(_alive(p) for p in workers)
        time.sleep(0.5)  # the supervisor's next look lists the workers
        server = psutil.Process(proc.pid).children()[0].pid
        os.kill(proc.pid, stop)
        assert proc.wait(30) == 128 + stop
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in [server, *workers]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in [server, *workers])
    finally:
        if proc.poll() is None:
            proc.kill()


def test_make_serve_binds_the_host_of_the_serve_settings(monkeypatch):
    from shoprank.config import Serve
    from shoprank.ranking import launch

    assert Serve().host == "127.0.0.1"
    ran: list[list[str]] = []
    monkeypatch.setattr(launch, "supervise", lambda cmd: ran.append(cmd) or 0)
    monkeypatch.setenv("SHOPRANK_PARAMS", str(ROOT / "params.yaml"))
    assert launch.main(["--port", "3999"]) == 0
    assert ran[0][-4:] == ["--host", "127.0.0.1", "--port", "3999"]
    monkeypatch.setenv("SHOPRANK__SERVE__HOST", "0.0.0.0")
    launch.main([])
    assert ran[1][-4:] == ["--host", "0.0.0.0", "--port", "3000"]
    recipe = (ROOT / "Makefile").read_text().split("\nserve:")[1].split("\n\n")[0]
    assert "exec $(BIN)/python -m shoprank.ranking.launch" in recipe and "bentoml serve" not in recipe
