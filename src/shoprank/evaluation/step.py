"""`shoprank evaluate`: every trained candidate on the test split, written for DVC.

Outputs: ``metrics/evaluate.json`` (one entry per candidate, the winner by
``select.metric``, and the current champion re-scored on the same split, which is what
``select`` compares the winner with) and ``metrics/reliability/<candidate>.csv``
(calibration curves, DVC plots).
Simulated batches carry ground truth (``paths.truth``); with it the report adds the
ratio to the Bayes-optimal AUC and the re-ranking of every retrieved candidate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from shoprank.artifacts import FEATURE_SERVICE
from shoprank.compute import map_partitions, partition_count
from shoprank.config import Params
from shoprank.evaluation.evaluate import Pool, Truth, evaluate_scorer, not_computed
from shoprank.inputs.apply import derive
from shoprank.inputs.frame import VECTOR_COLUMNS, Frame, Vectors, dense, read_frame
from shoprank.inputs.texts import batch_texts
from shoprank.inputs.understood import QueryReader
from shoprank.logs import log, timed
from shoprank.models.attributes import pipeline_filled
from shoprank.models.objective import needs_purchase
from shoprank.models.scorers import Scorer, load, purchase_given_click, reads_text
from shoprank.quality import current_batch
from shoprank.training.data import cold_items, read_split
from shoprank.training.query_reader import pipeline_reader
from shoprank.training.train import training_set_path

logger = logging.getLogger(__name__)
CANDIDATE_CHUNK = 200_000  # candidate rows whose features are held at once
CHAMPION = "champion"  # the champion's key among the scorers of the candidate pool


def load_truth(truth_dir: Path, test: pd.DataFrame) -> Truth | None:
    """Ground truth aligned with the test rows, or None for real (non-simulated) logs.

    The service's own feedback in a simulated batch has no truth: those rows (no logging
    propensity, not in the simulator's impressions) are left out of the truth metrics.
    The candidates get their price from the catalog the simulator wrote beside its truth.
    """
    truth_dir = Path(truth_dir)
    if not (truth_dir / "candidates.parquet").is_file():
        return None
    keys = test[["request_id", "item_id"]]
    p = pd.read_parquet(truth_dir / "impressions.parquet")
    p_click = keys.merge(p, on=["request_id", "item_id"], how="left")["p_click"].to_numpy()
    covered = ~np.isnan(p_click)
    logged = test["propensity"].notna().to_numpy() if "propensity" in test else np.ones(len(test), bool)
    if (logged & ~covered).any():
        raise ValueError(f"{truth_dir}: ground truth does not cover the test impressions (another batch?)")
    if not covered.any():
        log(logger, "no simulated row in the test split: no truth metrics", rows=len(test))
        return None
    cand = pd.read_parquet(truth_dir / "candidates.parquet")
    cand = cand[cand["request_id"].isin(set(test["request_id"]))].reset_index(drop=True)
    catalog = truth_dir.parent / "catalog.parquet"
    if "p_purchase" in cand and catalog.is_file():
        price = pd.read_parquet(catalog, columns=["item_id", "price"]).set_index("item_id")["price"]
        cand["price"] = cand["item_id"].map(price).to_numpy(np.float64)
    exam = (
        pd.read_parquet(truth_dir / "examination.parquet").sort_values("position")["examination"].to_numpy()
    )
    return Truth(p_click, cand, exam, covered)


def candidate_frame(
    params: Params,
    test: pd.DataFrame,
    candidates: pd.DataFrame,
    store=None,
    texts: pd.Series | None = None,
    reader: QueryReader | None = None,
) -> Frame:
    """Point-in-time features (on ``features.offline_engine``) of retrieved candidates
    (``request_id``, ``item_id``) of test rows, and the item texts (``texts``: see
    :func:`texts_for`) as the test rows have them; ``reader``: the query-understanding heads
    (None: :func:`pipeline_reader`'s)."""
    from shoprank.features import open_store
    from shoprank.features.pit import historical_features
    from shoprank.features.queries import query_ids

    req = test.drop_duplicates("request_id").set_index("request_id")[["event_timestamp", "user_id", "query"]]
    rows = candidates[["request_id", "item_id"]].join(req, on="request_id")
    rows["query_id"] = query_ids(rows["query"].fillna(""))
    store = store if store is not None else open_store(params.features)
    keys = rows[["user_id", "item_id", "query_id", "event_timestamp"]]
    feats, arrays = historical_features(
        store, keys, FEATURE_SERVICE, positions=VECTOR_COLUMNS, engine=params.features.offline_engine
    )
    df = pd.concat([rows.reset_index(drop=True), feats.drop(columns=list(keys.columns))], axis=1)
    df["position"], df["clicked"], df["propensity"] = 0, 0, np.nan
    vectors = {}
    for name, (pos, column) in arrays.items():  # each distinct vector once: codes into its table
        table = dense(column)
        vectors[name] = Vectors(pos + 1, np.concatenate([np.zeros((1, table.shape[1]), np.float32), table]))
    return derive(
        Frame(df, vectors),
        texts=texts,
        filled=pipeline_filled(params.paths.models),
        reader=reader or pipeline_reader(params),
    )


def candidate_scores(
    params: Params,
    test: pd.DataFrame,
    truth: Truth,
    scorers: dict[str, Scorer],
    chunk_rows: int = CANDIDATE_CHUNK,
    purchase: bool = True,
    texts: pd.Series | None = None,
    reader: QueryReader | None = None,
) -> dict[str, Pool]:
    """Every scorer's position-free P(click) of every retrieved candidate, aligned with
    ``truth.candidates``, and its P(purchase | click) where it has a purchase head (and
    ``purchase``).

    The features of the full candidate pool (50 per request) would not fit in memory at
    scale, so they are built and scored a chunk of whole requests at a time
    (:func:`score_chunk`, on ``compute.engine``); only the scores are kept.
    """
    cand = truth.candidates
    if not len(cand):
        return {name: Pool(np.empty(0, dtype=np.float64)) for name in scorers}
    if texts is None:
        texts = texts_for(params, scorers.values())
    if reader is None:
        reader = pipeline_reader(params)
    # at least one chunk per partition (compute.partitions: by default the cluster's CPUs on ray)
    chunk_rows = min(chunk_rows, -(-len(cand) // partition_count(params.compute, len(cand))))
    request = cand["request_id"].to_numpy()
    # chunk boundaries fall between requests: candidates of one request stay together
    starts = np.flatnonzero(np.r_[True, request[1:] != request[:-1]])
    edges = [0]
    for s in starts[1:]:
        if s - edges[-1] >= chunk_rows:
            edges.append(int(s))
    edges.append(len(cand))
    requests = test.drop_duplicates("request_id")[["request_id", "event_timestamp", "user_id", "query"]]
    chunks = [cand.iloc[lo:hi] for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    shared = (params, requests, scorers, texts, reader, purchase)
    got = map_partitions(params.compute, score_chunk, chunks, shared, what="candidate chunk")
    click = {name: np.concatenate([c[name] for c, _ in got]) for name in scorers}
    buy = {name: _joined([b[name] for _, b in got]) for name in scorers}
    return {name: Pool(click[name], buy[name]) for name in scorers}


def _joined(parts: list[np.ndarray | None]) -> np.ndarray | None:
    return None if any(p is None for p in parts) else np.concatenate(parts)  # type: ignore[arg-type]


def score_chunk(
    chunk: pd.DataFrame,
    params: Params,
    requests: pd.DataFrame,
    scorers: dict[str, Scorer],
    texts: pd.Series | None,
    reader: QueryReader,
    purchase: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """One chunk of retrieved candidates: its point-in-time features, then every scorer's
    P(click) and P(purchase | click) (None without a purchase head). The unit
    ``compute.engine`` distributes."""
    with timed(logger, "candidate chunk scored", rows=len(chunk)):
        frame = candidate_frame(params, requests, chunk, None, texts, reader)
        click = {
            name: np.asarray(s.predict(frame, with_position=False), np.float64) for name, s in scorers.items()
        }
        buy = {name: purchase_given_click(s, frame) if purchase else None for name, s in scorers.items()}
    return click, {k: None if v is None else np.asarray(v, np.float64) for k, v in buy.items()}


def texts_for(params: Params, scorers: Iterable[Scorer | None]) -> pd.Series | None:
    """The validated batch's item texts (what training read) when a scorer tokenizes them, else None."""
    if not any(reads_text(s) for s in scorers):
        return None
    return batch_texts(current_batch(params.paths.validated))


def champion_scorer(models_dir: Path) -> tuple[dict | None, Scorer | None, str]:
    """(record, scorer, why not): the champion in service, loaded to be scored beside the candidates.

    A champion whose artifact is missing or altered has no scorer, and the reason says why.
    """
    from shoprank.selection import load_champion, unusable

    record = load_champion(models_dir)
    if record is None:
        return None, None, "no champion yet"
    problem = unusable(models_dir, record)
    if problem:
        return record, None, problem
    return record, load(Path(models_dir) / record["artifact"])[1], ""


def _champion_entry(record: dict, metrics: dict[str, float] | None, why: str) -> dict:
    entry: dict = {"version": record["version"], "candidate": record["candidate"]}
    if metrics is None:
        return {**entry, "not_scored": why}
    return {**entry, "metrics": {k: round(v, 6) for k, v in metrics.items()}}


def run_evaluate(params: Params) -> dict:
    from shoprank.selection import select_winner

    s = params.train
    path = training_set_path(params)
    split, keys = read_split(path, s.val_share, s.test_share)
    train_queries = set(keys["query"].iloc[split["train"]].fillna(""))
    cold = cold_items(keys)[split["test"]]
    del keys
    test = read_frame(path, rows=split["test"])  # only the test rows: training splits are never held
    truth = load_truth(params.paths.truth, test.df)
    scorers: dict[str, Scorer] = {}
    for name in s.candidates:
        model = Path(params.paths.models) / "candidates" / f"{name}.pt"
        if not model.is_file():
            raise FileNotFoundError(f"{model}: candidate {name!r} is not trained (run `shoprank train`)")
        scorers[name] = load(model)[1]
    record, champion, why = champion_scorer(Path(params.paths.models))
    texts = texts_for(params, [*scorers.values(), champion])
    reader = pipeline_reader(params)
    derive(test, texts=texts, filled=pipeline_filled(params.paths.models), reader=reader)
    if champion is not None:
        try:  # a champion trained on other inputs may not read today's rows: then it is not compared
            champion.predict(test.take(np.arange(min(len(test), 8))), with_position=False)
        except (KeyError, ValueError) as exc:
            champion, why = None, f"cannot score this split: {exc!r}"[:300]
    everyone = {**scorers, CHAMPION: champion} if champion is not None else scorers
    pool = None
    if truth is not None:
        with timed(logger, "candidate features and scores", rows=len(truth.candidates)):
            pool = candidate_scores(
                params,
                test.df,
                truth,
                everyone,
                purchase=needs_purchase(params.serve.objective),
                texts=texts,
                reader=reader,
            )
    report: dict = {
        "objective": params.serve.objective,
        "test_rows": len(test),
        "test_requests": int(test.df["request_id"].nunique()),
        "candidates": {},
    }
    curves = []
    for name, scorer in scorers.items():
        with timed(logger, "evaluated", candidate=name):
            metrics, curve = evaluate_scorer(
                scorer,
                test,
                train_queries,
                truth,
                None if pool is None else pool[name],
                cold,
                params.serve.objective,
            )
        report["candidates"][name] = {k: round(v, 6) for k, v in metrics.items()}
        report["not_computed"] = not_computed(metrics, test.df, truth)
        curves.append(curve.assign(candidate=name))
    report["winner"] = select_winner(
        report["candidates"], params.select.metric, params.select.higher_is_better
    )
    if record is not None:
        scored = None
        if champion is not None:
            with timed(logger, "evaluated", candidate=f"champion {record['version']}"):
                champion_pool = None if pool is None else pool[CHAMPION]
                scored, _ = evaluate_scorer(
                    champion, test, train_queries, truth, champion_pool, cold, params.serve.objective
                )
        report["champion"] = _champion_entry(record, scored, why)
    out = Path(params.paths.metrics)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluate.json").write_text(json.dumps(report, indent=2, sort_keys=True, allow_nan=False))
    curves_dir = out / "reliability"
    curves_dir.mkdir(exist_ok=True)
    for stale in curves_dir.glob("*.csv"):  # a candidate dropped from train.candidates
        stale.unlink()
    for curve in curves:
        curve.to_csv(curves_dir / f"{curve['candidate'].iloc[0]}.csv", index=False)
    log(logger, "evaluation", winner=report["winner"], metric=params.select.metric)
    return report
