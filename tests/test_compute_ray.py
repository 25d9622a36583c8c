"""``compute.engine: ray``: the same functions as Ray tasks give the local engine's answers.

One Ray is started in this process for the module (two CPUs, no dashboard), as
``compute.address: null`` does. The tiny pipeline runs on the local engine, then the
training set, evaluation and the features step (every text encoded again) run on Ray over
the same inputs: the training table and the feature tables must be the same row for row,
and the evaluation report the same. The bad inputs: ray not installed, an address where
nothing listens, a partition that fails half-way.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import ray.cloudpickle
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from shoprank.compute import ComputeError, bounds, map_partitions
from shoprank.config import Compute, ParamsError, load_params
from shoprank.features import duck
from shoprank.features.build import text_embedder
from tests.conftest import ROOT, step, tiny_raw_params

pytestmark = [pytest.mark.slow, pytest.mark.integration]
runner = CliRunner()
RAY = Compute(engine="ray", partitions=3)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the failing stand-ins below run on workers


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The tiny pipeline on the local engine (LightGBM and popularity), and a params file for Ray."""
    root = tmp_path_factory.mktemp("compute")
    raw = tiny_raw_params(root)
    raw["train"]["candidates"] = {
        k: v for k, v in raw["train"]["candidates"].items() if k in {"lightgbm", "popularity"}
    }
    local = root / "params.yaml"
    local.write_text(yaml.safe_dump(raw))
    on_ray = root / "params-ray.yaml"
    fresh = {**raw["text"], "cache_dir": str(root / "cache-ray")}  # every text encoded again, on Ray
    # tasks of text.batch_size texts: the encoder's own batches are those of the local run
    compute = {"engine": "ray", "partitions": 3, "embed_batch": raw["text"]["batch_size"]}
    on_ray.write_text(yaml.safe_dump({**raw, "text": fresh, "compute": compute}))
    for name in ("simulate", "validate", "features", "training-set", "train", "evaluate"):
        step(name, local)
    params = load_params(local)
    shutil.copytree(params.paths.features, root / "features-local")
    training = next(params.paths.training.glob("*.parquet"))
    saved = {
        "training": pq.read_table(training),
        "evaluate": json.loads((params.paths.metrics / "evaluate.json").read_text()),
    }
    return {"root": root, "local": local, "ray": on_ray, "params": params, "path": training, **saved}


def test_the_training_set_on_ray_is_the_local_one_row_for_row(pipeline):
    pipeline["path"].unlink()
    out = step("training-set", pipeline["ray"])
    assert "compute=ray" in out and "training-set join done partition=3 of=3" in out  # three Ray tasks
    got = pq.read_table(pipeline["path"])
    assert got.num_rows == pipeline["training"].num_rows > 1000
    assert got.schema.equals(pipeline["training"].schema)
    assert got.equals(pipeline["training"])


def test_evaluation_on_ray_reports_the_local_metrics(pipeline):
    out = step("evaluate", pipeline["ray"])
    assert "candidate chunk done partition=3 of=3" in out
    got = json.loads((pipeline["params"].paths.metrics / "evaluate.json").read_text())
    want = pipeline["evaluate"]
    assert set(got["candidates"]) == {"lightgbm", "popularity"}
    assert "expected_revenue@10" in got["candidates"]["lightgbm"]  # scored on the candidate pool
    assert got == want


def test_local_partitions_do_not_change_the_training_set(pipeline):
    p = pipeline["params"]
    out = pipeline["root"] / "parts" / "train.parquet"
    from shoprank.features import training_set
    from shoprank.quality import current_batch

    training_set(
        p.features, current_batch(p.paths.validated), p.paths.features, out, compute=Compute(partitions=4)
    )
    assert pq.read_table(out).equals(pipeline["training"])


JOIN = duck.join_partition


def _fail_after_the_first(rows, views):
    """The join of the first partition; every later partition fails (a worker's disk, say)."""
    if rows.index[0] > 0:
        raise OSError("disk full")
    return JOIN(rows, views)


@pytest.mark.parametrize("engine", ["ray", "local"])
def test_a_failed_partition_leaves_no_training_set_and_a_rerun_starts_clean(pipeline, monkeypatch, engine):
    from shoprank.features import training_set
    from shoprank.quality import current_batch

    p = pipeline["params"]
    out = pipeline["root"] / f"failed-{engine}" / "train.parquet"
    out.parent.mkdir()
    compute = Compute(engine=engine, partitions=3)
    args = (p.features, current_batch(p.paths.validated), p.paths.features, out)
    with monkeypatch.context() as patch:
        patch.setattr(duck, "join_partition", _fail_after_the_first)
        expected = ComputeError if engine == "ray" else OSError
        with pytest.raises(expected, match="disk full") as failed:
            training_set(*args, compute=compute)
    named = str(failed.value) + "".join(getattr(failed.value, "__notes__", []))
    assert "training-set join: partition 2 of 3" in named
    assert list(out.parent.iterdir()) == []  # neither the file nor its temporary
    training_set(*args, compute=compute)
    assert pq.read_table(out).equals(pipeline["training"])


@contextmanager
def partitions_logged() -> Iterator[list[str]]:
    """The progress lines of :func:`map_partitions` while the block runs."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(str(record.msg))  # type: ignore[method-assign]
    logger = logging.getLogger("shoprank.compute")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("bad partition")
    return x * x


def test_map_partitions_keeps_order_and_names_the_failed_partition():
    assert map_partitions(RAY, _square_or_fail, [5, 1, 4, 2]) == [25, 1, 16, 4]
    assert map_partitions(Compute(), _square_or_fail, [5, 1, 4, 2]) == [25, 1, 16, 4]
    with pytest.raises(
        ComputeError, match=r"squares: partition 3 of 4 failed on Ray: ValueError: bad partition"
    ):
        map_partitions(RAY, _square_or_fail, [1, 2, 3, 4], what="squares")
    assert bounds(10, 3) == [(0, 3), (3, 6), (6, 10)] and bounds(2, 5) == [(0, 1), (1, 2)]


def test_new_texts_encoded_on_ray_equal_local(pipeline, tmp_path):
    text = pipeline["params"].text
    texts = [f"{colour} running shoe, size {n}" for n in range(30) for colour in ("red", "blue", "green")]
    text = text.model_copy(update={"runtime": "torch"})  # no ONNX export: the same encode on both engines
    local = text_embedder(text.model_copy(update={"cache_dir": tmp_path / "local"}))(texts)
    compute = Compute(engine="ray", embed_batch=16)
    with partitions_logged() as done:
        got = text_embedder(text.model_copy(update={"cache_dir": tmp_path / "ray"}), compute)(texts)
    assert any(line.startswith("text encoding done partition=6 of=6") for line in done)  # 90 texts, 16 a task
    assert got.shape == local.shape == (90, 384)
    assert np.allclose(got, local, atol=1e-5)  # other processes, other thread counts: rounding at most
    assert not np.allclose(got[0], got[1])


def test_ray_not_installed_names_the_setting(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ComputeError, match=r"compute.engine is ray, but the ray package is not installed"):
        map_partitions(RAY, _square_or_fail, [1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_address_names_the_setting(monkeypatch, scheme):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process
    bad = Compute(engine="ray", address=f"{scheme}127.0.0.1:{_free_port()}", connect_timeout_s=1)
    with pytest.raises(
        ComputeError, match=r"compute.address is .*127.0.0.1.*nothing answers there within 1 s"
    ):
        map_partitions(bad, _square_or_fail, [1])


def test_compute_settings_are_checked(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for compute, error in (
        ({"engine": "spark"}, "compute.engine"),
        ({"address": "nowhere"}, "compute.address"),
        ({"workers": 3}, "compute.workers"),
    ):
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump({**raw, "compute": compute}))
        with pytest.raises(ParamsError, match=error):
            load_params(path)


def test_the_cli_names_the_setting_when_the_cluster_is_unreachable(pipeline, monkeypatch, tmp_path):
    raw = yaml.safe_load(pipeline["local"].read_text())
    raw["compute"] = {"engine": "ray", "address": f"127.0.0.1:{_free_port()}", "connect_timeout_s": 1}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    before = {p.name for p in pipeline["path"].parent.iterdir()}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    result = runner.invoke(app, ["training-set", "--params", str(path)])
    assert result.exit_code == 2
    assert "compute.address" in result.output
    assert {p.name for p in pipeline["path"].parent.iterdir()} == before
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_features_step_on_ray_writes_the_local_tables(pipeline):
    """Last: it rewrites the feature tables the tests above read (with the same values)."""
    out = step("features", pipeline["ray"])
    assert "text encoding done partition=2 of=" in out  # the cache for Ray was empty: tasks encoded
    saved = pipeline["root"] / "features-local"
    tables = sorted(p.name for p in saved.glob("*.parquet"))
    assert "item_text.parquet" in tables and "query_text.parquet" in tables
    for name in tables:
        got = pq.read_table(pipeline["params"].paths.features / name)
        assert got.equals(pq.read_table(saved / name)), name
