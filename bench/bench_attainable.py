"""How much of the oracle's uplift any model could capture from the data: the ceiling of ranking quality.

Evaluation measures a model by its share of the oracle's uplift in expected top-10
clicks over the legacy ranking, and by its AUC over the Bayes-optimal AUC. The oracle
ranks by the simulator's true attractiveness. This benchmark asks what a model that knew
the simulator's utility term by term (``shoprank.data.simulator.clicks.utility_terms``)
would score, on the same test requests and candidates as ``shoprank evaluate``:

- ``noise-free``: every term exactly, only the per-(request, item) noise unknown;
- ``quality from history``: every term exactly but the item's latent quality, which it
  estimates from the item's own history features (CTR, position-debiased CTR and
  impressions per window, age, price; a least-squares fit on the test candidates
  themselves, so an optimistic estimate);
- ``quality unknown``: every term but quality exactly, quality not at all;
- ``these features, fit to utility``: no term known; gradient-boosted trees fitted to the
  noise-free utility itself (not to clicks) on the features the trained models get
  (LightGBM's view: numeric, categorical, query-item cosine), out of fold over requests
  of the test candidates themselves. A model learning from noisy clicks on the same
  features can hardly do better: the ceiling of what these features carry;
- ``... and bert_ctr's score``: the same fit with the pipeline's trained bert_ctr
  candidate's score (its logit) as one more input, so that what the network drew from
  the text embeddings and the user's history (which LightGBM's view lacks) is in too.

It also reports, per trained candidate, the **term weights** of its relevance logit: a
least-squares fit of the logit on the utility terms within each request (the logit and
the terms centred per request, since only differences between one request's candidates
change its ranking). A model that had learned a term exactly weighs it 1, as the
simulator does; below 1 it ranks by less of that term than the shoppers do.

Expected clicks are scored exactly as evaluation scores them
(:func:`shoprank.evaluation.oracle.expected_clicks`); the AUCs are on the logged test
impressions with the true examination curve. The trained candidates' figures come from
``metrics/evaluate.json`` for comparison. Needs the default pipeline's outputs (raw data
with ground truth, the training set, the feature store): run ``dvc repro`` first.

Its baseline is the legacy ranking (the uplift share's zero) and the Bayes-optimal AUC,
both computed on the same test split in the same run.
Run: ``python -m bench.bench_attainable`` (minutes: it re-runs the simulation and fits trees).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.hardware import describe
from bench.results import row
from shoprank.config import load_params
from shoprank.data.simulator import clicks
from shoprank.data.simulator.run import simulate
from shoprank.evaluation import metrics as M
from shoprank.evaluation.oracle import expected_clicks
from shoprank.evaluation.step import candidate_frame, load_truth
from shoprank.models.baselines import tabular
from shoprank.models.scorers import load
from shoprank.training.data import time_split
from shoprank.training.train import feature_spec, training_set_path

ROOT = Path(__file__).resolve().parents[1]
TERM = "term_"  # the utility terms' columns
HISTORY = ("item_ctr_", "item_coec_", "item_impressions_", "item_age_days", "item_is_new", "log_price")


def simulated_terms(params) -> pd.DataFrame:
    """The utility terms of every (request, candidate) of the pipeline's own simulation."""
    captured: list[dict[str, np.ndarray]] = []
    real = clicks.utility_terms

    def capture(*args, **kwargs):
        terms = real(*args, **kwargs)
        captured.append({k: np.asarray(v, np.float64).ravel() for k, v in terms.items()})
        return terms

    clicks.utility_terms = capture
    try:
        sim = simulate(params.simulate)
    finally:
        clicks.utility_terms = real
    cand = sim.truth["candidates"][["request_id", "item_id", "attractiveness"]].copy()
    for name in captured[0]:  # prefixed: truth tables have columns of these names too (price)
        cand[TERM + name] = np.concatenate([c[name] for c in captured])
    return cand


def fitted_to_utility(x: pd.DataFrame, utility: np.ndarray, requests: np.ndarray, folds: int = 4):
    """Out-of-fold LightGBM predictions of ``utility`` from inputs ``x`` (folds of whole requests)."""
    import lightgbm as lgb

    codes = pd.factorize(requests)[0]
    fold = np.random.default_rng(0).permutation(codes.max() + 1)[codes] % folds
    params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 63, "min_data_in_leaf": 50}
    out = np.empty(len(x))
    for k in range(folds):
        train, held = fold != k, fold == k
        booster = lgb.train({**params, "verbose": -1, "seed": 0}, lgb.Dataset(x[train], utility[train]), 400)
        out[held] = booster.predict(x[held])
        print(f"  fold {k + 1}/{folds} fitted", flush=True)
    return out


def term_weights(logit: np.ndarray, cand: pd.DataFrame, names: list[str]) -> dict[str, float]:
    """Least-squares weights of each utility term in ``logit``, within requests (truth: 1 each).

    Terms that do not vary within any request (intent) have no weight to fit and are left out.
    """
    group = cand["request_id"].to_numpy()

    def centred(v: np.ndarray) -> np.ndarray:
        return v - pd.Series(v).groupby(group).transform("mean").to_numpy()

    x = {n: centred(cand[n].to_numpy(np.float64)) for n in names}
    varying = [n for n in names if np.var(x[n]) > 1e-12]
    coef, *_ = np.linalg.lstsq(np.column_stack([x[n] for n in varying]), centred(logit), rcond=None)
    return {n.removeprefix(TERM): float(c) for n, c in zip(varying, coef, strict=True)}


def candidate_logits(frame) -> dict[str, np.ndarray]:
    """Each trained candidate's position-free relevance logit on the evaluation frame."""
    out = {}
    for path in sorted((ROOT / "models" / "candidates").glob("*.pt")):
        p = np.clip(load(path)[1].predict(frame, with_position=False), 1e-6, 1 - 1e-6)
        out[path.stem] = np.log(p / (1 - p))
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def rows(table: dict, bayes: float) -> list[dict]:
    """Each ranking's uplift share, and its AUC against the Bayes-optimal AUC of the same impressions."""
    out = []
    for name, m in table.items():
        out.append(row(f"{name}: oracle uplift share", m["uplift_share"], ""))
        if m.get("auc") is not None:
            out.append(row(f"{name}: AUC", m["auc"], "", "Bayes-optimal AUC", bayes))
    return out


def main(argv: list[str] | None = None) -> dict:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params(ROOT / "params.yaml")
    print(f"hardware: {describe()}", flush=True)
    t0 = time.perf_counter()
    if not training_set_path(params).is_file():
        return _skip("no training set: run `dvc repro` first")
    frame = pd.read_parquet(
        training_set_path(params),
        columns=["request_id", "item_id", "event_timestamp", "user_id", "query", "position", "clicked"],
    )
    split = time_split(frame, params.train.val_share, params.train.test_share)
    test = frame.iloc[split["test"]].reset_index(drop=True)
    truth = load_truth(params.paths.truth, test)
    if truth is None:
        return _skip("no ground truth: this benchmark needs simulated data (run `dvc repro`)")
    terms = simulated_terms(params)
    cand = truth.candidates.merge(terms, on=["request_id", "item_id"], suffixes=("", "_sim"), how="left")
    if not np.array_equal(cand["attractiveness"].to_numpy(), cand["attractiveness_sim"].to_numpy()):
        return _skip(
            "the simulation differs from the pipeline's raw data: params.yaml changed since `dvc repro`"
        )
    names = [c for c in terms.columns if c.startswith(TERM)]
    frame = candidate_frame(params, test, truth.candidates)
    features = frame.df
    hist = [c for c in features.columns if c.startswith(HISTORY) and features[c].dtype.kind in "fiub"]
    x = features[hist].astype("float64").fillna(0.0).to_numpy()
    x = np.column_stack([(x - x.mean(0)) / (x.std(0) + 1e-9), np.ones(len(x))])
    quality = cand[TERM + "quality"].to_numpy()
    coef, *_ = np.linalg.lstsq(x, quality, rcond=None)
    quality_hat = x @ coef
    r2 = 1 - np.var(quality - quality_hat) / np.var(quality)

    c = params.simulate.clicks
    known = c.base_utility + cand[names].sum(axis=1).to_numpy()
    rankers = {
        "legacy ranking": cand["legacy_score"].to_numpy(),
        "oracle (true attractiveness)": cand["attractiveness"].to_numpy(),
        "noise-free (every term)": known,
        "quality from history": known - quality + quality_hat,
        "quality unknown": known - quality,
    }
    # the models' inputs as LightGBM sees them (numeric, categorical, query-item cosine), no position
    spec = feature_spec(list(frame.df.columns), "lightgbm")  # candidate_frame added the derived inputs
    inputs = tabular(frame, spec, position=0).drop(columns=["position"])
    requests = cand["request_id"].to_numpy()
    rankers["these features, fit to utility"] = fitted_to_utility(inputs, known, requests)
    logits = candidate_logits(frame)
    if "bert_ctr" in logits:  # what the network learned from text and history, as one more input
        with_score = inputs.assign(bert_ctr_logit=logits["bert_ctr"])
        rankers["... and bert_ctr's score"] = fitted_to_utility(with_score, known, requests)
    weights = {"noise-free (every term)": term_weights(known, cand, names)}
    weights.update({name: term_weights(v, cand, names) for name, v in logits.items()})
    clicks_at = {k: expected_clicks(cand, v, truth.examination) for k, v in rankers.items()}
    legacy, oracle = clicks_at["legacy ranking"], clicks_at["oracle (true attractiveness)"]

    # AUC of P(click) = examination(position) * sigmoid(utility) on the logged test impressions
    logged = test.merge(
        cand[["request_id", "item_id"]].assign(row=np.arange(len(cand))), on=["request_id", "item_id"]
    )
    exam = truth.examination[logged["position"].to_numpy() - 1]
    y, at = logged["clicked"].to_numpy(), logged["row"].to_numpy()
    bayes = M.auc(y, exam * cand["attractiveness"].to_numpy()[at])
    scored = [k for k in rankers if k not in ("legacy ranking", "oracle (true attractiveness)")]
    aucs = {k: M.auc(y, exam * sigmoid(rankers[k][at])) for k in scored}

    print(
        f"test split: {len(test):,} impressions, {cand['request_id'].nunique():,} requests, "
        f"{len(cand):,} candidates"
    )
    print(
        f"item quality from the item's history features: R^2 {r2:.3f} (least squares on the test candidates)"
    )
    print(f"{'ranking':32s} {'top-10 clicks':>13s} {'uplift share':>12s} {'AUC':>7s} {'AUC/Bayes':>9s}")
    table = {}
    for k, v in clicks_at.items():
        share = (v - legacy) / (oracle - legacy)
        auc = aucs.get(k)
        table[k] = {"expected_clicks@10": v, "uplift_share": share, "auc": auc}
        tail = f"{auc:7.4f} {auc / bayes:9.4f}" if auc is not None else f"{'':7s} {'':9s}"
        print(f"{k:32s} {v:13.3f} {share:12.3f} {tail}")
    print(f"{'Bayes-optimal (true p_click)':32s} {'':13s} {'':12s} {bayes:7.4f} {1.0:9.4f}")
    report = ROOT / "metrics" / "evaluate.json"
    if report.is_file():
        for name, m in json.loads(report.read_text())["candidates"].items():
            table[f"{name} (metrics/evaluate.json)"] = {
                "expected_clicks@10": m.get("expected_clicks@10"),
                "uplift_share": m["oracle_uplift_share"],
                "auc": m["auc"],
            }
            print(
                f"{name + ' (metrics/evaluate.json)':32s} {m.get('expected_clicks@10', float('nan')):13.3f} "
                f"{m['oracle_uplift_share']:12.3f} {m['auc']:7.4f} {m['auc_over_oracle']:9.4f}"
            )
    print_weights(weights)
    seconds = time.perf_counter() - t0
    print(f"({seconds:.0f} s)")
    figures = {"hardware": describe(), "quality_r2": r2, "bayes_auc": bayes, "rankings": table}
    figures["term_weights"] = weights
    figures.update(test_impressions=len(test), candidates=len(cand), seconds=round(seconds, 1))
    headline = ["these features, fit to utility", "... and bert_ctr's score", "noise-free (every term)"]
    order = [k for k in headline if k in table] + [k for k in table if k not in headline]
    out = rows({k: table[k] for k in order}, bayes) + weight_rows(weights)
    return {"rows": out, "figures": figures}


def print_weights(weights: dict[str, dict[str, float]]) -> None:
    terms = list(next(iter(weights.values())))
    print("term weights of each relevance logit, within requests (the simulator's: 1)")
    print(f"{'':24s}" + "".join(f"{t:>10s}" for t in terms))
    for name, w in weights.items():
        print(f"{name:24s}" + "".join(f"{w.get(t, float('nan')):10.3f}" for t in terms))


def weight_rows(weights: dict[str, dict[str, float]]) -> list[dict]:
    """Each trained candidate's weight of each term, against the simulator's (1)."""
    return [
        row(f"{name}: weight of the {term} term", w, "", "the simulator's weight", 1.0)
        for name, ws in weights.items()
        if name != "noise-free (every term)"
        for term, w in ws.items()
    ]


def _skip(why: str) -> dict:
    print(f"skipped: {why}")
    return {"skipped": why}


if __name__ == "__main__":
    main()
