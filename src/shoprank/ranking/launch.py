"""``make serve``: `bentoml serve` on ``serve.host``, stopped with every process it started.

BentoML's process manager (circus) starts each worker in a session of its own, so a
Ctrl-C at the terminal or a SIGTERM to ``make`` reaches the server's first process and
not its workers, which then keep the port and the model's memory. This supervisor
starts `bentoml serve` in a new session, keeps a list of every process below it while
they run (a worker whose parent died is still on it), and on SIGINT, SIGTERM or SIGHUP,
or when the server exits, sends SIGTERM to all of them, then SIGKILL to what is left
after ``grace_s``.

    python -m shoprank.ranking.launch --port 3000
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil

SERVICE = "serving.service:ShopRank"
GRACE_S = 10.0  # what a worker gets to flush the feedback log's queue before SIGKILL
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _below(pid: int) -> set[psutil.Process]:
    try:
        return set(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return set()


def _end(procs: set[psutil.Process], grace_s: float) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()  # psutil checks the pid still names the process it saw (no reuse)
    _, alive = psutil.wait_procs(list(procs), timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=grace_s)


def supervise(cmd: list[str], grace_s: float = GRACE_S, poll_s: float = 0.5) -> int:
    """Run ``cmd`` until it exits or a stop signal comes; then end it and all it started.

    Returns its exit code, or 128 + the signal's number when a signal stopped it.
    """
    stopping = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stopping.set()

    for s in STOP_SIGNALS:
        signal.signal(s, on_signal)
    proc = subprocess.Popen(cmd, start_new_session=True)  # the terminal's Ctrl-C comes to us
    root = psutil.Process(proc.pid)
    seen: set[psutil.Process] = set()
    while proc.poll() is None and not stopping.wait(poll_s):
        seen |= _below(proc.pid)
    seen |= _below(proc.pid)
    _end({root, *seen} if proc.poll() is None else seen, grace_s)
    code = proc.wait()
    return 128 + received[0] if received else code


def main(argv: list[str] | None = None) -> int:
    from shoprank.config import load_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    host = load_params().serve.host
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    cmd = [bentoml, "serve", SERVICE, "--host", host, "--port", str(args.port)]
    print(f"serving on http://{host}:{args.port} (serve.host in params.yaml)", flush=True)
    return supervise(cmd)


if __name__ == "__main__":
    sys.exit(main())
