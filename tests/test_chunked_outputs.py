"""The simulator's batch written in chunks, popularity and cf fitted in chunks, outputs never half-written."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from shoprank.data import raw as raw_step
from shoprank.data.simulator import run as sim_run
from shoprank.data.simulator.run import prepare
from shoprank.data.simulator.write import requests_per_chunk, write_batch
from shoprank.data.staged import Staged, WriteError, clean_stale
from shoprank.privacy import Shoppers

BLOCK = 256  # the simulator's block, shrunk so that the tiny profile's 1,500 requests make several chunks


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(sim_run, "CHUNK", BLOCK)


@pytest.fixture
def shoppers(tmp_path, monkeypatch) -> Shoppers:
    monkeypatch.setenv("SHOPRANK_PSEUDONYM_KEY", "0123456789abcdef" * 4)
    return Shoppers.load(tmp_path / "secrets", tmp_path / "erasure")


def _files(out: Path) -> dict[str, pd.DataFrame]:
    return {str(p.relative_to(out)): pd.read_parquet(p) for p in sorted(out.rglob("*.parquet"))}


def _shape(shoppers):
    return lambda frames: raw_step.shielded(frames, shoppers)


def test_chunks_write_the_rows_of_one_chunk(params, shoppers, tmp_path, small_blocks):
    settings = params.simulate.model_copy(update={"profile": "tiny"})
    whole = write_batch(prepare(settings), tmp_path / "whole", 10**9, _shape(shoppers))
    parts = write_batch(prepare(settings), tmp_path / "parts", 2 * BLOCK, _shape(shoppers))
    assert (whole.chunks, parts.chunks) == (1, 3)
    a, b = _files(tmp_path / "whole"), _files(tmp_path / "parts")
    assert sorted(a) == sorted(b)
    assert "impressions.parquet" in a and "truth/candidates.parquet" in a
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)
    assert pq.ParquetFile(tmp_path / "parts" / "impressions.parquet").metadata.num_row_groups == 3
    written = json.loads((tmp_path / "parts" / "truth" / "summary.json").read_text())
    assert written == json.loads(json.dumps(parts.summary))
    assert {k: v for k, v in parts.summary.items() if "auc" not in k} == {
        k: v for k, v in whole.summary.items() if "auc" not in k
    }
    for k in ("bayes_auc", "bayes_auc_expected"):  # sums over the chunks, in another order
        assert parts.summary[k] == pytest.approx(whole.summary[k], abs=1e-12)
    # the rows held at once follow the chunk, not the profile: impressions, candidates, requests, p_click
    m = settings.market
    per_request = 2 * m.page_size + m.candidates_per_request + 1
    assert parts.rows_held <= 2 * BLOCK * per_request < whole.rows_held
    assert whole.rows_held == 1500 * per_request


def test_the_in_memory_simulation_is_the_written_one(params, tiny_sim, shoppers, tmp_path):
    settings = params.simulate.model_copy(update={"profile": "tiny", "chunk_requests": 1})
    raw_step.simulate_batch(settings, tmp_path, shoppers)
    imp = pd.read_parquet(tmp_path / "impressions.parquet")
    mem = tiny_sim.tables["impressions"]
    assert len(imp) == len(mem)
    for col in ("request_id", "item_id", "position", "clicked", "purchased", "propensity"):
        np.testing.assert_array_equal(imp[col].to_numpy(), mem[col].to_numpy(), err_msg=col)
    truth = pd.read_parquet(tmp_path / "truth" / "candidates.parquet")
    np.testing.assert_array_equal(truth["attractiveness"], tiny_sim.truth["candidates"]["attractiveness"])


def test_the_chunk_setting_rounds_up_to_whole_blocks():
    assert requests_per_chunk(1) == sim_run.CHUNK
    assert requests_per_chunk(sim_run.CHUNK + 1) == 2 * sim_run.CHUNK
    with pytest.raises(ValueError, match="simulate.chunk_requests"):
        requests_per_chunk(0)


def _previous_batch(out: Path) -> dict[str, bytes]:
    out.mkdir(parents=True)
    (out / "impressions.parquet").write_bytes(b"the previous complete batch")
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_full_disk_names_the_output_and_leaves_the_previous_batch(
    params, shoppers, tmp_path, small_blocks, monkeypatch
):
    settings = params.simulate.model_copy(update={"profile": "tiny", "chunk_requests": BLOCK})
    before = _previous_batch(tmp_path / "raw")
    writes = []
    real = pq.ParquetWriter.write_table

    def fills_up(self, table, *args, **kwargs):
        writes.append(1)
        if len(writes) > 12:  # a few chunks in
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fills_up)
    with pytest.raises(WriteError) as caught:
        raw_step.simulate_batch(settings, tmp_path / "raw", shoppers)
    message = str(caught.value)
    assert "no space left" in message and str(tmp_path / "raw") in message
    assert "simulate.chunk_requests" in message and "re-run starts clean" in message
    assert {
        p.name: p.read_bytes() for p in (tmp_path / "raw").iterdir()
    } == before  # nothing new, nothing staged
    monkeypatch.setattr(pq.ParquetWriter, "write_table", real)
    raw_step.simulate_batch(settings, tmp_path / "raw", shoppers)  # the re-run writes the whole batch
    assert len(pd.read_parquet(tmp_path / "raw" / "impressions.parquet")) == 30_000


def test_a_chunk_that_raises_leaves_nothing_half_written(
    params, shoppers, tmp_path, small_blocks, monkeypatch
):
    settings = params.simulate.model_copy(update={"profile": "tiny", "chunk_requests": BLOCK})
    real, calls = sim_run.sessions, []

    def breaks(m, lo, hi):
        calls.append(lo)
        if len(calls) == 3:
            raise ValueError("a bad draw")
        return real(m, lo, hi)

    monkeypatch.setattr("shoprank.data.simulator.write.sessions", breaks)
    with pytest.raises(ValueError, match="a bad draw") as caught:
        raw_step.simulate_batch(settings, tmp_path / "raw", shoppers)
    assert any("nothing was left half-written" in note for note in caught.value.__notes__)
    assert list((tmp_path / "raw").iterdir()) == []


def test_memory_running_out_names_the_chunk_setting(tmp_path):
    staged = Staged(tmp_path, "simulate.chunk_requests", "shoprank raw")
    with pytest.raises(WriteError, match="lower simulate.chunk_requests"), staged:
        staged.append("impressions.parquet", pd.DataFrame({"x": [1, 2]}))
        raise MemoryError
    assert list(tmp_path.iterdir()) == []


def test_a_killed_run_is_cleaned_up_by_the_next(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    (tmp_path / f".staged-{pid}-abc").mkdir()
    (tmp_path / f".training_set.parquet.tmp-{pid}").write_text("half")
    (tmp_path / f".staged-{os.getpid()}-mine").mkdir()  # a live writer's (this process): kept
    (tmp_path / "impressions.parquet").write_text("complete")
    clean_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".staged-{os.getpid()}-mine", "impressions.parquet"]
    )


def _tiny_split(tiny_sim, path: Path, chunk_rows: int):
    """The tiny impressions as a training table (80% train, 20% val): in memory, and as file chunks."""
    from shoprank.inputs.frame import Frame
    from shoprank.training.chunks import FileChunks

    imp = tiny_sim.tables["impressions"]
    imp.to_parquet(path, index=False, row_group_size=4_000)
    cut = int(len(imp) * 0.8)
    frames = (
        Frame(imp.iloc[:cut].reset_index(drop=True), {}),
        Frame(imp.iloc[cut:].reset_index(drop=True), {}),
    )
    chunks = [FileChunks(path, rows, chunk_rows) for rows in (np.arange(cut), np.arange(cut, len(imp)))]
    return frames, chunks


def test_popularity_in_chunks_is_popularity_in_memory(tiny_sim, tmp_path):
    from shoprank.models.baselines import PopularityModel
    from shoprank.models.preprocess import feature_spec

    (train, _), (chunks, _) = _tiny_split(tiny_sim, tmp_path / "training_set.parquet", 7_001)
    assert chunks.n_chunks == 4
    spec = feature_spec(list(train.df.columns), "popularity")
    whole = PopularityModel().fit(train, spec)
    parts = PopularityModel().fit_chunks(chunks.scan([spec.label, spec.position, spec.item_id]), spec)
    assert parts.item_ctr.keys() == whole.item_ctr.keys() and len(whole.item_ctr) > 100
    np.testing.assert_allclose(list(parts.item_ctr.values()), list(whole.item_ctr.values()), rtol=1e-12)
    assert parts.position_ctr == pytest.approx(whole.position_ctr, rel=1e-12)
    assert parts.global_ctr == pytest.approx(whole.global_ctr, rel=1e-12)


def test_cf_in_chunks_is_cf_in_memory(tiny_sim, tmp_path):
    import torch

    from shoprank.config import CF
    from shoprank.models.cf import CollaborativeModel
    from shoprank.models.preprocess import feature_spec

    (train, val), (tr, va) = _tiny_split(tiny_sim, tmp_path / "training_set.parquet", 5_000)
    assert tr.n_chunks == 5
    spec = feature_spec(list(train.df.columns), "cf")
    settings = CF(dim=4, epochs=2, min_count=3)
    whole = CollaborativeModel(settings, seed=0).fit(train, val, spec)
    parts = CollaborativeModel(settings, seed=0).fit_chunks(tr.scan, va.scan, spec)
    assert parts.users == whole.users and parts.items == whole.items and len(whole.items) > 100
    for name, weight in whole.model.state_dict().items():
        torch.testing.assert_close(parts.model.state_dict()[name], weight, rtol=0, atol=0, msg=name)
    np.testing.assert_array_equal(parts.predict(val), whole.predict(val))


def test_a_full_disk_while_building_the_training_set_names_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import shoprank.features as features
    from shoprank.cli import app

    out = tmp_path / "data" / "training"
    out.mkdir(parents=True)
    (out / ".training_set.parquet.tmp-999999999").write_text("left by a killed run")

    def fills_up(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(features, "training_set", fills_up)
    monkeypatch.setenv("SHOPRANK__PATHS__TRAINING", str(out))
    monkeypatch.setattr("shoprank.cli._validated", lambda p: tmp_path)
    result = CliRunner().invoke(app, ["training-set"])
    assert isinstance(result.exception, WriteError)
    assert f"Free space at {out}" in str(result.exception) and "training_set.parquet" in str(result.exception)
    assert list(out.iterdir()) == []


def test_requests_drawn_in_slices_are_the_requests_drawn_at_once(params, monkeypatch):
    from dataclasses import fields

    from shoprank.data.simulator import requests as req_mod
    from shoprank.data.simulator.run import prepare

    settings = params.simulate.model_copy(update={"profile": "tiny"})
    monkeypatch.setattr(req_mod, "SLICE", 10**9)
    whole = prepare(settings).req
    monkeypatch.setattr(req_mod, "SLICE", 100)
    sliced = prepare(settings).req
    for f in fields(whole):
        np.testing.assert_array_equal(
            np.asarray(getattr(sliced, f.name)), np.asarray(getattr(whole, f.name)), f.name
        )


def test_requests_are_simulated_in_order_in_whole_blocks(params):
    m = prepare(params.simulate.model_copy(update={"profile": "tiny"}))
    with pytest.raises(ValueError, match="in order"):
        sim_run.sessions(m, 100, 200)  # not where the last run ended
    with pytest.raises(ValueError, match="whole blocks"):
        sim_run.sessions(m, 0, 100)  # ends inside a block
    assert len(sim_run.sessions(m, 0, len(m.req))["shown"]) == len(m.req)
