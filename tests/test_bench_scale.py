"""The scale benchmark's harness on the tiny profile: every dvc.yaml stage measured, resumable."""

from __future__ import annotations

import pytest
from bench import bench_scale
from bench.results import BENCHMARKS

pytestmark = pytest.mark.slow


def test_the_harness_measures_every_stage_and_resumes(tmp_path, monkeypatch):
    assert BENCHMARKS["scale"][0] == "bench.bench_scale"
    argv = ["--profiles", "tiny", "--quick", "--work", str(tmp_path), "--candidates", "popularity"]
    out = bench_scale.main(argv)
    got = out["figures"]["profiles"]["tiny"]
    expected = [name for name, _ in bench_scale.stages(["popularity"])]
    assert list(got["stages"]) == expected
    assert {"raw", "training-set", "train@popularity", "evaluate", "package"} <= set(expected)
    assert expected.index("understand") < expected.index("train@popularity") < expected.index("evaluate")
    for fig in got["stages"].values():
        assert fig["seconds"] > 0 and fig["peak_rss_gib"] > 0
    assert set(got["previous"]) == {"training-set", "train@popularity"}  # the tiny profile fits both
    assert got["impressions"] == 30_000 and got["previous_not_run"] is None
    assert (tmp_path / "tiny" / "previous" / "training" / "training_set.parquet").exists()
    measures = {r["measure"]: r for r in out["rows"]}
    ts = measures["tiny: training-set wall time"]
    assert ts["baseline"]["measure"] == "tiny: training-set, previous path" and ts["ratio"] is not None
    assert "tiny: raw cost per million impressions" in measures and "tiny: end to end peak RSS" in measures
    # a second run resumes: nothing runs again, the figures are those recorded
    monkeypatch.setattr(bench_scale, "run_stage", lambda *a, **k: pytest.fail("a finished stage ran again"))
    again = bench_scale.main(argv)
    assert again["figures"]["profiles"]["tiny"] == got
