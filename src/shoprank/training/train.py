"""`shoprank train`: fit one candidate on the training split, checkpoint it, report.

Candidates: ``bert_ctr`` (text + behaviour, params.train.mode), ``no_text`` (the same
network without language-model inputs: the ablation), ``lightgbm``, ``popularity`` and
``cf`` (collaborative filtering: shopper and item factors).
All read the same point-in-time training set and the same time split.

Where the training rows hold purchases, ``bert_ctr``, ``no_text`` and ``lightgbm`` also
learn P(purchase | click) (:func:`purchase_head`); a log without them trains click models
only, and each result says why.
"""

from __future__ import annotations

import copy
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow.parquet as pq
import torch

from shoprank.config import CF, Params, Train
from shoprank.config import LightGBM as LightGBMSettings
from shoprank.inputs.declare import by_name
from shoprank.inputs.frame import Frame
from shoprank.inputs.items import item_embeddings
from shoprank.logs import log
from shoprank.models.baselines import LightGBMModel, PopularityModel
from shoprank.models.bert_ctr import CTRConfig
from shoprank.models.cf import CollaborativeModel
from shoprank.models.preprocess import FeatureSpec, Preprocessor, feature_spec
from shoprank.models.scorers import NeuralScorer, save
from shoprank.text.tokenizer import PackedTokenizer
from shoprank.training.chunks import Chunks, FileChunks, as_chunks, max_of
from shoprank.training.stream import StreamData, stream_loader
from shoprank.training.trees import fit_lightgbm

logger = logging.getLogger(__name__)
CANDIDATES = ("bert_ctr", "no_text", "lightgbm", "popularity", "cf")  # each reads its split in chunks


@dataclass
class TrainResult:
    name: str
    artifact: Path
    seconds: float
    impressions_per_s: float
    epochs: int = 0
    best_val_loss: float = float("nan")
    purchase_head: str = "on"  # or why it is off

    def as_dict(self) -> dict:
        return {
            "candidate": self.name,
            "artifact": str(self.artifact),
            "seconds": round(self.seconds, 2),
            "impressions_per_s": round(self.impressions_per_s),
            "epochs": self.epochs,
            "best_val_loss": self.best_val_loss,
            "purchase_head": self.purchase_head,
        }


PURCHASE_CANDIDATES = ("bert_ctr", "no_text", "lightgbm")


def purchase_head(name: str, train: Frame | Chunks, label: str = "purchased") -> str:
    """ "on" when candidate ``name`` learns P(purchase | click) from ``train``, else why not.

    The training set fills a log's missing purchased column with 0, so a log without
    purchases and one without the column read the same: no purchase to learn from.
    """
    if name not in PURCHASE_CANDIDATES:
        return f"{name} models clicks only"
    if not any(
        (df[label].fillna(0) > 0).any() for df in as_chunks(train, 1 << 62).scan([label]) if label in df
    ):
        return "the log records no purchases (no purchased column, or no row with a purchase)"
    return "on"


def precision_for(setting: str) -> str:
    """'auto': bf16 mixed precision on a GPU that supports it, full precision otherwise."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def fit_neural(
    train: Frame | Chunks,
    val: Frame | Chunks,
    spec: FeatureSpec,
    item_ids: list[str],
    item_table: np.ndarray,
    settings: Train,
    history_length: int,
    use_text: bool,
    log_dir: Path | None = None,
    encoder=None,
    purchase: bool = False,
) -> tuple[NeuralScorer, dict]:
    """Train BertCTR with Lightning; returns the best checkpoint (validation loss) as a scorer.

    ``encoder`` (a :class:`~shoprank.text.TextEncoder`) is required in fine-tune and LoRA
    modes; the frames then need the declared text inputs (:mod:`shoprank.inputs.texts`), and
    the scorer carries the encoder's tokenizer, so it tokenizes offline wherever it goes.
    ``purchase``: with the purchase head (the frames need a ``purchased`` column).
    ``train`` and ``val`` are read in chunks of ``settings.chunk_rows`` rows
    (:mod:`shoprank.training.stream`): the preprocessor is fitted in one pass over the
    chunks, then every epoch streams them again.
    """
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from shoprank.models.lightning import LitCTR, OptimConfig

    L.seed_everything(settings.seed, workers=True, verbose=False)
    train, val = as_chunks(train, settings.chunk_rows), as_chunks(val, settings.chunk_rows)
    pre = Preprocessor(spec, id_min_count=settings.id_min_count).fit_chunks((c.df for c in train), item_ids)
    end_to_end = use_text and settings.mode != "frozen"
    if end_to_end:
        if encoder is None:
            raise ValueError(f"train.mode={settings.mode} needs the text encoder")
        if encoder.dim != item_table.shape[1]:  # the history reads the stored vectors beside its own
            raise ValueError(
                f"the encoder gives {encoder.dim}-d vectors, the features hold {item_table.shape[1]}-d ones "
                "(text.model_dir changed since `shoprank features`?)"
            )
        pre.tokenizer = PackedTokenizer.of(encoder.tokenizer, encoder.max_length)
    tr = StreamData(train, pre, history_length, settings.batch_size, shuffle=True, seed=settings.seed)
    va = StreamData(val, pre, history_length, settings.batch_size * 4, shuffle=False)
    cfg = CTRConfig(
        text_dim=item_table.shape[1],
        n_numeric=len(spec.numeric),
        cat_cardinalities=pre.cardinalities,
        d=settings.d,
        cross_layers=settings.cross_layers,
        mlp=tuple(settings.mlp),
        dropout=settings.dropout,
        use_text=use_text,
        mode=settings.mode if use_text else "frozen",
        lora_rank=settings.lora_rank,
        page_size=int(max(max_of(train, spec.position), 1)),
        purchase_head=purchase,
        bias_numeric=tuple(j for j, name in enumerate(spec.numeric) if by_name(name).bias),
    )
    steps = settings.max_epochs * len(tr)  # batches
    optim = OptimConfig(
        lr=settings.lr,
        encoder_lr=settings.encoder_lr,
        weight_decay=settings.weight_decay,
        warmup_steps=min(settings.warmup_steps, steps // 10),
        total_steps=steps,
    )
    table = torch.from_numpy(np.concatenate([np.zeros((1, item_table.shape[1]), np.float32), item_table]))
    # train a copy: the caller's encoder keys the embedding cache and must never change
    lit = LitCTR(cfg, optim, table, copy.deepcopy(encoder.model).train() if end_to_end else None)
    with tempfile.TemporaryDirectory() as ckpt_dir:
        checkpoint = ModelCheckpoint(dirpath=ckpt_dir, monitor="val_loss", save_top_k=1, mode="min")
        trainer = L.Trainer(
            max_epochs=settings.max_epochs,
            accelerator=settings.accelerator,
            devices=settings.devices,
            num_nodes=settings.num_nodes,
            strategy=settings.strategy,
            precision=cast(Any, precision_for(settings.precision)),  # one of Lightning's literals
            callbacks=[EarlyStopping("val_loss", patience=settings.patience), checkpoint],
            logger=_logger(log_dir),
            enable_progress_bar=sys.stderr.isatty(),
            enable_model_summary=False,
            deterministic=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(lit, stream_loader(tr), stream_loader(va))
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        # DDP: every rank reads rank 0's checkpoint; none leaves (removing the folder) before all have
        trainer.strategy.barrier("best checkpoint read")
    state = {k.removeprefix("model."): v for k, v in best.items()}
    info = {
        "epochs": trainer.current_epoch,
        "best_val_loss": float(checkpoint.best_model_score or float("nan")),
        "global_rank": trainer.global_rank,  # DDP: each rank holds the same weights; rank 0 writes them
        "held_rows": max(tr.held_rows, va.held_rows),  # the most rows held as tensors at once
    }
    enc_cfg = encoder.model.config.to_dict() if end_to_end else None
    return NeuralScorer(cfg, state, pre, history_length, enc_cfg), info


def _logger(log_dir: Path | None):
    if log_dir is None:
        return False
    from dvclive.lightning import DVCLiveLogger

    return DVCLiveLogger(dir=str(log_dir), save_dvc_exp=False, dvcyaml=None)


def train_candidate(
    name: str,
    train: Frame | Chunks,
    val: Frame | Chunks,
    item_ids: list[str],
    item_table: np.ndarray,
    settings: Train,
    history_length: int,
    out_dir: Path,
    log_dir: Path | None = None,
    encoder=None,
    lightgbm: LightGBMSettings | None = None,
    cf: CF | None = None,
) -> TrainResult:
    """Fit candidate ``name`` and write ``out_dir/<name>.pt`` (+ checksum).

    ``train`` and ``val``: frames, or :class:`~shoprank.training.chunks.Chunks` of
    ``settings.chunk_rows`` rows; every candidate reads them chunk by chunk.
    """
    if name not in CANDIDATES:
        raise ValueError(f"unknown candidate {name!r}; known: {', '.join(CANDIDATES)}")
    columns = train.columns() if isinstance(train, Chunks) else list(train.df.columns)
    spec = feature_spec(columns, name, ids=settings.id_min_count > 0)
    start = time.perf_counter()
    head = purchase_head(name, train, spec.purchased)
    info: dict = {}
    scorer: NeuralScorer | LightGBMModel | PopularityModel | CollaborativeModel
    if name in ("bert_ctr", "no_text"):
        scorer, info = fit_neural(
            train,
            val,
            spec,
            item_ids,
            item_table,
            settings,
            history_length,
            use_text=name == "bert_ctr",
            encoder=encoder,
            log_dir=log_dir,
            purchase=head == "on",
        )
    elif name == "lightgbm":
        trees = lightgbm or LightGBMSettings()
        scorer = fit_lightgbm(
            as_chunks(train, settings.chunk_rows),
            as_chunks(val, settings.chunk_rows),
            spec,
            trees.rounds,
            settings.seed,
            trees.max_rows,
            purchase=head == "on",
        )
    elif name == "cf":
        tr, va = as_chunks(train, settings.chunk_rows), as_chunks(val, settings.chunk_rows)
        scorer = CollaborativeModel(cf, seed=settings.seed).fit_chunks(tr.scan, va.scan, spec)
        info["best_val_loss"] = scorer.best_val_loss
    else:
        columns = [spec.label, spec.position, spec.item_id]
        scorer = PopularityModel().fit_chunks(as_chunks(train, settings.chunk_rows).scan(columns), spec)
    seconds = time.perf_counter() - start
    path = Path(out_dir) / f"{name}.pt"
    if info.get("global_rank", 0) != 0:  # another rank of a DDP run: rank 0 writes the artifact
        return TrainResult(name, path, seconds, len(train) / seconds, info.get("epochs", 0))
    save(scorer, path, kind=name)
    epochs = max(info.get("epochs", 1), 1)
    result = TrainResult(
        name,
        path,
        seconds,
        len(train) * epochs / seconds,
        info.get("epochs", 0),
        info.get("best_val_loss", float("nan")),
        head,
    )
    log(logger, "trained", **result.as_dict())
    return result


def run_train(params: Params, candidates: tuple[str, ...] | None = None) -> dict:
    """The `train` step: fit the candidates on the training split of the training set.

    The split comes from the key columns alone. Every candidate reads its rows in chunks of
    ``train.chunk_rows``; popularity and cf only the few columns they fit on.
    """
    from shoprank.inputs.texts import batch_texts
    from shoprank.models.attributes import pipeline_filled
    from shoprank.quality import current_batch
    from shoprank.training.data import SPLIT_COLUMNS, time_split
    from shoprank.training.query_reader import pipeline_reader

    s = params.train
    path = training_set_path(params)
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run `shoprank training-set` first")
    split = time_split(
        pq.read_table(path, columns=list(SPLIT_COLUMNS)).to_pandas(), s.val_share, s.test_share
    )
    # fine-tune and LoRA tokenize the item texts: the validated batch's, as evaluation reads them
    texts = batch_texts(current_batch(params.paths.validated)) if s.mode != "frozen" else None
    # what derive adds to every chunk as to a whole frame: the texts, the filled attributes, the
    # query-understanding inputs
    derive_with = {
        "texts": texts,
        "filled": pipeline_filled(params.paths.models),
        "reader": pipeline_reader(params),
    }
    item_ids, table = item_embeddings(params.paths.features)
    encoder = None
    if s.mode != "frozen":
        from shoprank.text import load_encoder

        encoder = load_encoder(params.text)
    out_dir = Path(params.paths.models) / "candidates"
    results = {}
    for name in candidates or s.candidates:
        train, val = (FileChunks(path, split[k], s.chunk_rows, derive_with) for k in ("train", "val"))
        log_dir = Path(params.paths.metrics) / "train" / name if name in ("bert_ctr", "no_text") else None
        results[name] = train_candidate(
            name,
            train,
            val,
            item_ids,
            table,
            s,
            params.features.history_length,
            out_dir,
            log_dir,
            encoder,
            lightgbm=params.lightgbm,
            cf=params.cf,
        ).as_dict()
    return {"rows": {k: len(v) for k, v in split.items()}, "candidates": results}


def training_set_path(params: Params) -> Path:
    return Path(params.paths.training) / "training_set.parquet"
