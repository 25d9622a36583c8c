"""The benchmarks' results file and the tables made from it (bench.results, bench.report, bench.__main__).

No benchmark runs here: fake modules stand in, returning what a module's ``main`` returns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import bench.__main__ as bench_main
import pytest
from bench import report, results
from bench.results import BENCHMARKS, row

ROOT = Path(__file__).resolve().parents[1]
README = f"# shop\n\nintro\n\n{report.BEGIN}\nold table\n{report.END}\n\n## after\n"


def fake_modules(calls: list[tuple[str, list[str]]]) -> dict[str, SimpleNamespace]:
    def simulate_main(argv):
        calls.append(("simulate", argv))
        base = 100_000.0
        return {
            "rows": [
                row(
                    "default profile: simulation + Parquet write", 80_000, "impressions/s", "simulation", base
                ),
                row("peak RSS", 1.5, "GiB"),
            ],
            "figures": {"results": [{"profile": "default", "shape": (3, 4)}], "nan": math.nan},
        }

    def broken_main(argv):
        calls.append(("train", argv))
        raise RuntimeError("no weights")

    return {
        "bench.bench_simulate": SimpleNamespace(main=simulate_main),
        "bench.bench_train": SimpleNamespace(main=broken_main),
        "bench.bench_serving": SimpleNamespace(main=lambda argv: {"skipped": "no packaged champion"}),
    }


def test_row_ratio_is_value_over_baseline():
    r = row("p99", 5.0, "ms", "naive p99", 500.0)
    assert r == {
        "measure": "p99",
        "value": 5.0,
        "unit": "ms",
        "baseline": {"measure": "naive p99", "value": 500.0, "unit": "ms"},
        "ratio": 0.01,
    }
    assert row("peak", 2.0, "GiB")["ratio"] is None
    assert row("p99", math.nan, "ms", "base", 1.0)["value"] is None
    assert row("p99", 1.0, "ms", "base", 0.0)["ratio"] is None


def test_collect_runs_every_module_and_records_failures_and_skips():
    calls: list[tuple[str, list[str]]] = []
    modules = fake_modules(calls)
    entries, failed = results.collect(
        ["simulate", "train", "serving"], modules.__getitem__, log=lambda _: None
    )
    assert calls == [("simulate", []), ("train", [])]
    assert failed == ["train"]
    sim = entries["simulate"]
    assert sim["title"] == BENCHMARKS["simulate"][1] and sim["command"] == "python -m bench.bench_simulate"
    assert sim["rows"][0]["ratio"] == 0.8
    assert sim["figures"] == {"results": [{"profile": "default", "shape": [3, 4]}], "nan": None}
    assert "RuntimeError: no weights" in entries["train"]["skipped"] and entries["train"]["rows"] == []
    assert entries["serving"]["skipped"] == "no packaged champion"
    json.dumps(entries)  # everything is writable as JSON


def test_merge_keeps_other_entries_only_from_the_same_machine():
    old = {"format": 1, "hardware": "machine A", "benchmarks": {"train": {"rows": []}, "simulate": {}}}
    new = {"simulate": {"rows": [1]}}
    same = results.merge(old, new, "machine A")
    assert list(same["benchmarks"]) == ["simulate", "train"]  # BENCHMARKS order
    assert same["benchmarks"]["simulate"] == {"rows": [1]}
    other = results.merge(old, new, "machine B")
    assert other == {"format": 1, "hardware": "machine B", "benchmarks": {"simulate": {"rows": [1]}}}


def test_save_and_load(tmp_path):
    path = tmp_path / "results.json"
    assert results.load(path) == {"format": 1, "hardware": None, "benchmarks": {}}
    data = {"format": 1, "hardware": "h", "benchmarks": {"simulate": {"rows": []}}}
    results.save(data, path)
    assert results.load(path) == data
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format"):
        results.load(path)


def test_tables_say_what_is_not_yet_measured():
    empty = {"format": 1, "hardware": None, "benchmarks": {}}
    page, readme = report.render(empty, README)
    table = readme.split(report.BEGIN)[1].split(report.END)[0]
    for _, title, command in BENCHMARKS.values():
        assert f"| {title} | {report.MISSING} | | |" in table
        assert f"## {title}\n\n`{command}`\n\n*{report.MISSING}*" in page
    assert report.MISSING == "not yet measured — run `make bench`"
    assert readme.startswith("# shop\n\nintro\n\n") and readme.endswith(f"{report.END}\n\n## after\n")
    assert "old table" not in readme


def test_tables_show_the_figures_baselines_and_ratios():
    modules = fake_modules([])
    entries, _ = results.collect(["simulate", "serving"], modules.__getitem__, log=lambda _: None)
    data = results.merge({}, entries, "2 cores, Some CPU, 8 GiB RAM, Python 3.11.7")
    page, readme = report.render(data, README)
    headline = (
        "| Simulation throughput (default profile: simulation + Parquet write) | 80,000 impressions/s "
        "| simulation: 100,000 impressions/s | 0.8x |"
    )
    assert headline in readme
    assert "Hardware: 2 cores, Some CPU, 8 GiB RAM, Python 3.11.7." in readme
    assert "| peak RSS | 1.50 GiB | – | – |" in page and "| peak RSS" not in readme  # headline only
    assert "*skipped: no packaged champion*" in page
    assert f"| {BENCHMARKS['train'][1]} | {report.MISSING} | | |" in readme
    again = report.replace_block(readme, report.readme_table(data))
    assert again == readme  # idempotent


def test_number_format():
    assert [report.number(v) for v in (123456.7, 42.25, 3.14159, 0.04567, None)] == [
        "123,457",
        "42.2",
        "3.14",
        "0.0457",
        "–",
    ]


def test_replace_block_needs_the_markers():
    with pytest.raises(ValueError, match="bench:begin"):
        report.replace_block("# no markers\n", "table")


def test_make_bench_writes_the_results_file_and_the_tables(tmp_path, monkeypatch):
    modules = fake_modules([])
    monkeypatch.setattr(bench_main, "collect", lambda names: results.collect(names, modules.__getitem__))
    monkeypatch.setattr(bench_main, "describe", lambda: "test machine")
    readme, page, out = tmp_path / "README.md", tmp_path / "benchmarks.md", tmp_path / "results.json"
    readme.write_text(README)
    monkeypatch.setattr(report, "README", readme)
    monkeypatch.setattr(report, "PAGE", page)

    assert bench_main.main(["--only", "simulate,serving", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["hardware"] == "test machine" and list(data["benchmarks"]) == ["simulate", "serving"]
    assert "80,000 impressions/s" in readme.read_text() and "80,000 impressions/s" in page.read_text()
    assert report.update(out, readme, page, check=True)

    assert bench_main.main(["--only", "train", "--out", str(out), "--no-docs"]) == 1  # it failed
    assert list(json.loads(out.read_text())["benchmarks"]) == ["simulate", "train", "serving"]
    assert not report.update(out, readme, page, check=True)  # the docs now lag the file


def test_committed_tables_are_generated_from_the_committed_results():
    assert report.update(check=True), "run `python -m bench.report` (or `make bench`)"


def test_each_benchmark_turns_its_figures_into_rows():
    """Each module's ``rows`` on the shape its ``run`` returns (values are placeholders, not figures)."""
    from bench import bench_attainable, bench_embeddings, bench_features, bench_serving, bench_train

    lat = {"p50_ms": 2.0, "p99_ms": 4.0, "cpu_p50_ms": 1.0}
    lookup = {"1_item": lat, "100_items": lat, "fast_1_item": lat, "fast_100_items": lat}
    lookup["noise_100_items"] = {"p99_over_p50": 1.0, "reader_p99_over_p50": 2.0}
    profile = {"profile": "default", "features_s": 1.0, "materialize_sqlite_s": 1.0, "peak_rss_gib": 1.0}
    profile.update(peak_rss_scope="this profile", lookup_sqlite=lookup, lookup_redis=lookup)
    profile.update(materialize_redis_s=2.0, training_set_s=3.0, training_set_duckdb_s=1.5)
    tiny = {**profile, "profile": "tiny"}
    load = {"p50_ms": 1.0, "p99_ms": 2.0, "rps": 3.0, "logged_p99_ms": 2.0, "unseen_p50_ms": 4.0}
    found = {
        "features": bench_features.rows({"results": [tiny, profile]}),
        "embeddings": bench_embeddings.rows(
            {
                "texts_per_s": {"cold_encode": 1.0, "cold_cache": 1.0, "warm": 9.0, "warm_reopen": 3.0},
                "load_s": 1,
            }
        ),
        "train": bench_train.rows(
            {
                "no_text_per_s": 2,
                "bert_ctr_frozen_per_s": 1,
                "finetune_tiny_per_s": 1,
                "finetune_minilm_per_s": 1,
            }
            | {"peak_rss_gib": 1.0}
        ),
        "serving": bench_serving.rows(
            {f"{n}_{c}": load for n in ("rank100", "search") for c in (1, 8)},
            {"p50_ms": 100.0, "p99_ms": 200.0, "rps": 1.0},
        ),
        "attainable": bench_attainable.rows(
            {
                "legacy ranking": {"uplift_share": 0.0, "auc": None},
                "noise-free": {"uplift_share": 1.0, "auc": 0.5},
            },
            1.0,
        ),
    }
    assert found["features"][0]["measure"] == "default, SQLite, OnlineReader, 100 items, p99"
    assert found["features"][0]["ratio"] == 1.0
    duck = [
        r for r in found["features"] if r["measure"] == "default: training_set, DuckDB (point-in-time join)"
    ]
    assert duck[0]["ratio"] == 0.5 and duck[0]["baseline"]["measure"] == "training_set, Feast file store"
    assert found["embeddings"][0]["measure"] == "warm: cache .embed (in memory)"  # no ONNX: warm leads
    assert found["train"][0]["ratio"] == 0.5
    assert found["serving"][0]["ratio"] == 0.01
    assert [r["measure"] for r in found["attainable"]] == [
        "legacy ranking: oracle uplift share",
        "noise-free: oracle uplift share",
        "noise-free: AUC",
    ]
    for name, rows in found.items():
        entry = results.entry(name, {"rows": rows, "figures": {}})
        page = report.page({"hardware": "h", "benchmarks": {name: entry}})
        assert rows[0]["measure"] in page


def test_revenue_benchmark_compares_each_objective_with_the_click_objective():
    from bench import bench_revenue

    def objectives(clicks: float, revenue: float) -> dict:
        return {"expected_clicks@10": clicks, "expected_revenue@10": revenue}

    model = {
        "purchase_head": True,
        "clicks": objectives(2.0, 10.0),
        "purchases": objectives(1.9, 12.0),
        "revenue": objectives(1.5, 20.0),
    }
    figures = {
        "profile": "default",
        "test_requests": 10,
        "models": {"bert_ctr": model},
        "legacy": objectives(1.0, 5.0),
        "oracle": {"expected_clicks@10 (click oracle)": 3.0, "expected_revenue@10 (revenue oracle)": 40.0},
    }
    rows = bench_revenue.report(figures)["rows"]
    assert rows[0]["measure"] == "bert_ctr, revenue objective: expected revenue@10"
    assert rows[0]["ratio"] == 2.0 and rows[1]["ratio"] == 0.75  # sales up, clicks down, same model
    assert rows[-1]["value"] == 0.5


def test_encoder_comparison_reads_the_params_setting_and_puts_adapted_beside_stock(tmp_path):
    from bench.bench_encoders import ENCODER_LINE, compare, encoder_of

    params = tmp_path / "params.yaml"
    params.write_text("text:\n  model_dir: null\n  encoder: stock   # or adapted\nadapt:\n  encoder: x\n")
    assert encoder_of(params) == "stock"
    params.write_text(ENCODER_LINE.sub(r"\g<1>adapted", params.read_text(), count=1))
    assert encoder_of(params) == "adapted" and "# or adapted" in params.read_text()
    stock = {"candidates": {"bert_ctr": {"auc": 0.8, "oracle_uplift_share": 0.5}, "cf": {"auc": 0.7}}}
    adapted = {"candidates": {"bert_ctr": {"auc": 0.82, "oracle_uplift_share": 0.4}}}
    got = {r["measure"]: r for r in compare(stock, adapted)}
    assert set(got) == {"bert_ctr auc, adapted encoder", "bert_ctr oracle_uplift_share, adapted encoder"}
    assert got["bert_ctr auc, adapted encoder"]["ratio"] == round(0.82 / 0.8, 4)
    assert got["bert_ctr oracle_uplift_share, adapted encoder"]["baseline"]["value"] == 0.5
