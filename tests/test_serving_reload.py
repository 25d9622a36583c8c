"""A worker swaps to a newly packaged champion without a restart (shoprank.ranking.reload)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from shoprank.ranking.reload import Reloader


class FakeRanker:
    def __init__(self, bundle: Path):
        self.bundle, self.version, self.stopped = bundle, bundle.name, False

    def stop_refresh(self) -> None:
        self.stopped = True


def test_a_new_latest_bundle_is_loaded_and_swapped_in_the_old_one_stopped(tmp_path):
    store = {"latest": tmp_path / "v0001"}
    loads: list[Path] = []

    def load(bundle: Path) -> FakeRanker:
        loads.append(bundle)
        if bundle.name == "broken":
            raise OSError("truncated artifact")
        return FakeRanker(bundle)

    first = FakeRanker(tmp_path / "v0001")
    holder = SimpleNamespace(ranker=first)
    reloader = Reloader(holder, lambda: store["latest"], load, period_s=30)
    assert not reloader.check() and holder.ranker is first and loads == []  # nothing new: no load

    store["latest"] = tmp_path / "v0002"  # `shoprank package` after select
    assert reloader.check()
    assert holder.ranker.version == "v0002" and first.stopped

    store["latest"] = tmp_path / "broken"  # a bundle that cannot load: the current one serves on
    assert not reloader.check() and holder.ranker.version == "v0002"
    assert not reloader.check() and loads.count(tmp_path / "broken") == 1  # and is not retried

    store["latest"] = tmp_path / "v0001"  # `shoprank rollback` packages the previous champion
    assert reloader.check() and holder.ranker.version == "v0001"


def test_the_watch_thread_swaps_on_its_own_and_a_zero_period_never_starts(tmp_path):
    store = {"latest": tmp_path / "v0001"}
    holder = SimpleNamespace(ranker=FakeRanker(tmp_path / "v0001"))
    idle = Reloader(holder, lambda: store["latest"], FakeRanker, period_s=0)
    idle.start()
    assert idle.thread is None
    watching = Reloader(holder, lambda: store["latest"], FakeRanker, period_s=0.05)
    watching.start()
    try:
        store["latest"] = tmp_path / "v0002"
        deadline = time.monotonic() + 10
        while holder.ranker.version != "v0002" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder.ranker.version == "v0002"
    finally:
        watching.stop()
    assert not watching.thread.is_alive()
