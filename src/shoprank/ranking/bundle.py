"""`shoprank package`: the champion and everything it needs, as one folder in the BentoML model store.

The folder (a "bundle") holds:

    manifest.json        champion record and lineage, feature service, encoder reference, columns
    scorer.pt            the champion artifact (checksum verified against the champion record); a
                         fine-tuned or LoRA BERT-CTR holds its own encoder and tokenizer in it
    items.parquet        catalog facts + each item's latest features: display, filters, fallbacks
    users.parquet        each user's latest features: the fallback when the online store is down
    retrieval/           BM25 index (bm25s) and the faiss index of item embeddings
    recommend/           the feeds' click tables: co-clicked neighbours and recent clicks per item
    understanding.pkl    intent and attribute heads of `shoprank understand` (when it had labels)
    attributes.parquet   the catalogue's missing attribute values filled from the item's text by
                         `shoprank understand` (when it filled any): model inputs and shown as inferred
    encoder/             the query encoder as an ONNX graph + tokenizer, checked against PyTorch
                         (serving's one-query encodes are faster on ONNX Runtime): always the
                         stock encoder the features and the retrieval index were built with
    arms/                an online experiment's challenger models (experiments/arms.py), if any

:func:`package` writes it into the BentoML model store as ``shoprank-ranker:<version>-<sha>``
with the lineage as metadata; serving/bentofile.yaml builds a Bento around it. The file
names are :mod:`shoprank.artifacts`' (serving reads them from there too).
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from shoprank.artifacts import (
    ATTRIBUTES,
    ENCODER_DIR,
    FEATURE_SERVICE,
    ITEMS,
    MANIFEST,
    MODEL_NAME,
    RECOMMEND_DIR,
    RETRIEVAL_DIR,
    SCORER,
    UNDERSTANDING,
    USERS,
    sha256_of,
)
from shoprank.config import Params
from shoprank.config_experiment import Experiment
from shoprank.data.io import table_path
from shoprank.experiments.arms import ArmError, digest, package_arms
from shoprank.logs import log
from shoprank.models.attributes import ARTIFACT as FILLED_DIR
from shoprank.privacy import fingerprint, load_key

logger = logging.getLogger(__name__)
FORMAT = 1


class PackageError(ValueError):
    """Something the package needs is missing or inconsistent; the message says what."""


def _latest(path: Path, key: str) -> pd.DataFrame:
    df = pd.read_parquet(path)
    return (
        df.sort_values("event_timestamp", kind="stable")
        .drop_duplicates(key, keep="last")
        .reset_index(drop=True)
    )


def item_table(features_dir: Path, batch_dir: Path) -> pd.DataFrame:
    """One row per item: catalog display columns and its latest profile and stats features."""
    cat = pd.read_parquet(batch_dir / "catalog.parquet")[["item_id", "title", "description", "created_at"]]
    profile = _latest(features_dir / "item_profile.parquet", "item_id").drop(columns=["event_timestamp"])
    stats = _latest(features_dir / "item_stats.parquet", "item_id").drop(columns=["event_timestamp"])
    df = cat.astype({"item_id": str}).merge(profile.astype({"item_id": str}), on="item_id", how="left")
    df = df.merge(stats.astype({"item_id": str}), on="item_id", how="left")
    return df


def user_table(features_dir: Path) -> pd.DataFrame:
    out = None
    for name in ("user_profile", "user_stats", "user_history"):
        path = features_dir / f"{name}.parquet"
        if not path.is_file():
            continue
        df = _latest(path, "user_id").drop(columns=["event_timestamp"]).astype({"user_id": str})
        out = df if out is None else out.merge(df, on="user_id", how="outer")
    return out if out is not None else pd.DataFrame({"user_id": pd.Series(dtype=str)})


PARITY_QUERIES, PARITY_TITLES = 48, 16  # texts the exported encoder is checked on


def export_encoder(encoder: Any, out: Path, features_dir: Path, items: pd.DataFrame) -> dict[str, Any]:
    """The query encoder as ONNX in ``out``, checked on logged queries and item titles.

    Returns the export's metadata, or ``{"error": ...}`` when it cannot be made (serving
    then encodes with PyTorch: slower, same vectors).
    """
    from shoprank.text.onnx_encoder import ExportError, export

    texts: list[str] = []
    qt_path = features_dir / "query_text.parquet"
    if qt_path.is_file():
        queries = pd.read_parquet(qt_path, columns=["query_text"])["query_text"].dropna().unique()
        texts += [str(q) for q in queries[:PARITY_QUERIES] if str(q)]
    texts += items["title"].dropna().astype(str).head(PARITY_TITLES).tolist()
    try:
        meta = export(encoder, out, texts or ["an example query"])
    except (ExportError, ImportError) as exc:
        shutil.rmtree(out, ignore_errors=True)
        log(
            logger,
            "query encoder not exported; serving will encode with PyTorch",
            error=str(exc)[:300],
            level=logging.WARNING,
        )
        return {"error": str(exc)[:500]}
    log(
        logger,
        "exported the query encoder",
        parity_max_abs_diff=meta["parity_max_abs_diff"],
        texts=meta["parity_texts"],
        seconds=meta["export_seconds"],
    )
    return meta


def build_bundle(params: Params, out: Path | str, encoder: Any = None) -> dict[str, Any]:
    """Write the bundle of the current champion into ``out`` (an empty or new folder); return the manifest.

    ``encoder`` (the :class:`~shoprank.text.TextEncoder` the features were built with) is
    recorded by its key and exported to ONNX for serving; without it neither happens.
    """
    from shoprank.inputs.items import item_embeddings
    from shoprank.models.scorers import load
    from shoprank.models.understanding import load_understanding
    from shoprank.quality import current_batch
    from shoprank.retrieval import HybridRetriever, item_document
    from shoprank.selection import load_champion

    out = Path(out)
    models = Path(params.paths.models)
    record = load_champion(models)
    if record is None:
        raise PackageError(f"{models}/champion.json: no champion yet (run `shoprank select` first)")
    artifact = models / record["artifact"]
    if not artifact.is_file() or sha256_of(artifact) != record["sha256"]:
        raise PackageError(f"{artifact}: champion artifact missing or not matching its recorded sha256")
    kind, scorer = load(artifact)  # must load before it ships
    text_mode = champion_text(scorer)
    features_dir = Path(params.paths.features)
    try:
        batch = current_batch(params.paths.validated)
    except FileNotFoundError as exc:
        raise PackageError(str(exc)) from None
    for name in ("item_profile", "item_stats", "item_text"):
        if not (features_dir / f"{name}.parquet").is_file():
            raise PackageError(f"{features_dir}/{name}.parquet missing (run `shoprank features`)")
    if not table_path(batch, "impressions").is_file():
        raise PackageError(
            f"{table_path(batch, 'impressions')} missing: the feeds' click tables come from it"
        )
    try:
        understanding, report = load_understanding(models)
    except (FileNotFoundError, ValueError) as exc:
        raise PackageError(str(exc)) from None

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(artifact, out / SCORER)
    try:
        arms = package_arms(params.experiment, models, out)
    except ArmError as exc:
        raise PackageError(str(exc)) from None
    ids, vecs = item_embeddings(features_dir)
    if understanding is not None and report["embedding_dim"] != vecs.shape[1]:
        raise PackageError(
            f"{models}/understanding: heads fitted on {report['embedding_dim']}-d embeddings, the features "
            f"have {vecs.shape[1]}-d ones (run `shoprank understand`)"
        )
    items = item_table(features_dir, batch)
    items = items.set_index("item_id").loc[ids].reset_index()  # row i <-> embedding i
    items.to_parquet(out / ITEMS, index=False)
    users = user_table(features_dir)
    users.to_parquet(out / USERS, index=False)
    retriever = HybridRetriever.build(item_document(items), vecs)
    retriever.save(out / RETRIEVAL_DIR)
    feed = click_tables(params, batch, items, out / RECOMMEND_DIR)
    feed["collaborative"] = factor_table(params, items, out / RECOMMEND_DIR)
    if understanding is not None:
        with open(out / UNDERSTANDING, "wb") as f:
            pickle.dump(understanding, f)
    filled = models / FILLED_DIR / ATTRIBUTES
    if filled.is_file():  # what training and evaluation filled the item columns with
        shutil.copy2(filled, out / ATTRIBUTES)
    onnx = export_encoder(encoder, out / ENCODER_DIR, features_dir, items) if encoder is not None else None
    manifest = {
        "format": FORMAT,
        "name": MODEL_NAME,
        "champion": record,
        "kind": kind,
        "version": record["version"],
        "lineage": record["lineage"],
        "feature_service": FEATURE_SERVICE,
        # frozen: the champion reads the stock vectors; finetune, lora: its own encoder, in scorer.pt
        "text_mode": text_mode,
        "encoder": {
            "model_dir": str(params.text.model_dir) if params.text.model_dir else None,
            "max_length": params.text.max_length,
            "key": encoder.key if encoder is not None else None,
            "onnx": ENCODER_DIR if onnx is not None and "error" not in onnx else None,
            "onnx_export": onnx,
        },
        "items": len(items),
        "users": len(users),
        "embedding_dim": int(vecs.shape[1]),
        "recommend": feed,
        "understanding": report["scores"] if understanding is not None else None,  # held-out scores
        "understanding_missing": None if understanding is not None else report["reason"],
        "attributes_filled": filled.is_file(),
        "data_batch": batch.name,
        "experiment": arms,  # the challenger arms' models in arms/ (None: no experiment)
        # catalogue updates that landed before the batch was accepted are taken to be in it
        "catalog_as_of": catalog_as_of(batch),
        # which key named the batch's shoppers: the service checks that it holds the same one
        "pseudonym_key": fingerprint(load_key(params.paths.secrets)),
        "packaged_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def catalog_as_of(batch: Path) -> str | None:
    """When the batch was accepted by validation (its validation.json); None when it does not say."""
    from shoprank.quality.store import RESULT

    try:
        return str(json.loads((batch / RESULT).read_text())["validated_at"])
    except (OSError, ValueError, KeyError):
        return None


def champion_text(scorer: Any) -> str | None:
    """How the champion reads texts (a BERT-CTR's mode, None for other kinds); one that tokenizes
    them must build and tokenize offline from its own file before it ships."""
    from shoprank.models.scorers import reads_text

    cfg = getattr(scorer, "cfg", None)
    mode: str | None = getattr(cfg, "mode", None) if getattr(cfg, "use_text", False) else None
    if reads_text(scorer):
        try:
            scorer.model()
            scorer.pre.tokenizer(["a query"])
        except Exception as exc:  # whatever fails here would fail every request
            why = f"the {mode} champion cannot build or tokenize offline: {exc!r}"
            raise PackageError(why[:500]) from None
    return mode


def click_tables(params: Params, batch: Path, items: pd.DataFrame, out: Path) -> dict[str, Any]:
    """The feeds' co-click and recent-click tables from the batch's impressions (the champion's
    training data), in the bundle's item order; returns their summary for the manifest."""
    from shoprank.retrieval.clicks import write_tables

    columns = ["user_id", "ts", "position", "item_id", "clicked"]
    impressions = pd.read_parquet(table_path(batch, "impressions"), columns=columns)
    summary = write_tables(
        impressions,
        items["item_id"].astype(str).to_numpy(),
        out,
        window=params.features.history_length,
        neighbours=params.package.neighbours,
        days=params.package.popular_days,
    )
    log(logger, "click tables written", **summary)
    return summary


def factor_table(params: Params, items: pd.DataFrame, out: Path) -> dict[str, Any] | None:
    """The factors of the first trained candidate that has them (collaborative filtering), for
    the feeds' collaborative retriever; None when no such candidate was trained."""
    from shoprank.models.scorers import load
    from shoprank.retrieval.factors import write_factors

    for name in params.train.candidates:
        path = Path(params.paths.models) / "candidates" / f"{name}.pt"
        if not path.is_file():
            continue
        _, scorer = load(path)
        if hasattr(scorer, "retrieval_arrays"):
            summary = write_factors(scorer.retrieval_arrays(), items["item_id"].astype(str).to_numpy(), out)
            log(logger, "collaborative factors written", candidate=name, **summary)
            return {"candidate": name, **summary}
    return None


def model_tag(record: dict[str, Any], experiment: Experiment | None = None) -> str:
    """``shoprank-ranker:<version>-<sha>``, and the arms' fingerprint when an experiment runs."""
    arms = digest(experiment) if experiment is not None else ""
    return f"{MODEL_NAME}:{record['version'].lower()}-{record['sha256'][:12]}" + (f"-x{arms}" if arms else "")


def package(params: Params, force: bool = False, encoder: Any = None) -> dict[str, Any]:
    """Build the bundle straight into the BentoML model store; returns {tag, path, manifest, created}."""
    import bentoml
    from bentoml.exceptions import NotFound

    from shoprank.selection import load_champion

    record = load_champion(Path(params.paths.models))
    if record is None:
        raise PackageError(
            f"{params.paths.models}/champion.json: no champion yet (run `shoprank select` first)"
        )
    tag = model_tag(record, params.experiment)
    try:
        existing = bentoml.models.get(tag)
    except NotFound:
        existing = None
    if existing is not None and not force:
        manifest = json.loads(Path(existing.path_of(MANIFEST)).read_text())
        return {"tag": str(existing.tag), "path": existing.path, "manifest": manifest, "created": False}
    if existing is not None:
        bentoml.models.delete(tag)
    metadata = {
        "champion_version": record["version"],
        "candidate": record["candidate"],
        "metric": record["metric"],
        "metric_value": record["metrics"].get(record["metric"]),
        "sha256": record["sha256"],
        "feature_service": FEATURE_SERVICE,
        "encoder_key": str(encoder.key if encoder is not None else None),
        **{f"lineage_{k}": str(v) for k, v in record["lineage"].items()},
    }
    with bentoml.models.create(tag, metadata=metadata, labels={"project": "shoprank"}) as model:
        manifest = build_bundle(params, model.path, encoder)
    log(logger, "packaged", tag=tag, items=manifest["items"], candidate=record["candidate"])
    stored = bentoml.models.get(tag)
    return {"tag": str(stored.tag), "path": stored.path, "manifest": manifest, "created": True}
