"""A daemon thread that does one thing every period, for the service's background work."""

from __future__ import annotations

import threading


class Periodic:
    """Call :meth:`tick` every ``period_s`` seconds on a daemon thread, from :meth:`start` to :meth:`stop`.

    ``enabled`` False makes :meth:`start` a no-op (a setting of 0 turns the work off).
    """

    thread_name = "periodic"

    def __init__(self, period_s: float, enabled: bool = True):
        self.period_s, self.enabled = period_s, enabled
        self.thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        if not self.enabled or self.thread is not None:
            return
        self.thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self.thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (it also dies with the process: a daemon thread)."""
        self._stopping.set()
        if self.thread is not None:
            self.thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping.wait(self.period_s):
            self.tick()

    def tick(self) -> None:  # pragma: no cover - each subclass does its own work
        raise NotImplementedError
