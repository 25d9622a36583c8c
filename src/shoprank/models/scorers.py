"""One interface for every trained candidate: ``predict(frame, with_position)``.

A candidate with a purchase head also answers ``predict_purchase(frame)``: P(purchase |
click) per row, or None when it was trained on a log without purchases;
:func:`purchase_given_click` asks any scorer.

A scorer is saved as a single file (``torch.save`` of a plain dict), so selection can
checksum it and serving can load it without the training code path. A fine-tuned or
LoRA BERT-CTR keeps everything it needs in that file: its encoder's weights in the state,
the encoder's architecture, and its tokenizer in the preprocessor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from shoprank.artifacts import write_checksum
from shoprank.inputs.frame import Frame
from shoprank.models.bert_ctr import BertCTR, CTRConfig
from shoprank.models.preprocess import Preprocessor, TensorData, loader


class Scorer(Protocol):
    def predict(self, frame: Frame, with_position: bool = False) -> np.ndarray: ...


@dataclass
class NeuralScorer:
    """BERT-CTR (or its no-text ablation) with the preprocessing fitted at training time."""

    cfg: CTRConfig
    state: dict  # state_dict of BertCTR, the item-embedding table included
    pre: Preprocessor
    history_length: int
    encoder_config: dict | None = None  # fine-tune / LoRA: the BERT architecture to rebuild
    batch_size: int = 4096
    _model: BertCTR | None = None

    def model(self) -> BertCTR:
        if self._model is None:
            table = self.state["item_table"]
            encoder = (
                rebuild_encoder(self.cfg, self.encoder_config, self.state) if self.encoder_config else None
            )
            model = BertCTR(self.cfg, item_table=torch.zeros_like(table), encoder=encoder)
            model.load_state_dict(self.state)
            self._model = model.eval()
        return self._model

    @torch.inference_mode()
    def predict(self, frame: Frame, with_position: bool = False) -> np.ndarray:
        model = self.model()
        data = TensorData(self.pre.transform(frame, self.history_length))
        out = [
            torch.sigmoid(model(batch, with_position=with_position)).float().numpy()
            for batch in loader(data, self.batch_size, shuffle=False)
        ]
        return np.concatenate(out) if out else np.zeros(0)

    @torch.inference_mode()
    def predict_purchase(self, frame: Frame) -> np.ndarray | None:
        """P(purchase | click) per row; None without a purchase head."""
        if not self.cfg.purchase_head:
            return None
        model = self.model()
        data = TensorData(self.pre.transform(frame, self.history_length))
        out = [
            torch.sigmoid(model.heads(batch)[1]).float().numpy()
            for batch in loader(data, self.batch_size, shuffle=False)
        ]
        return np.concatenate(out) if out else np.zeros(0)


def reads_text(scorer: object) -> bool:
    """Does ``scorer`` tokenize the query and item texts itself (BERT-CTR fine-tuned or with LoRA)?"""
    return bool(getattr(getattr(scorer, "pre", None), "reads_text", False))


def purchase_given_click(scorer: object, frame: Frame) -> np.ndarray | None:
    """``scorer``'s P(purchase | click) of the frame's rows; None when it has no purchase head."""
    predict = getattr(scorer, "predict_purchase", None)
    return None if predict is None else predict(frame)


def save(scorer: object, path: Path | str, kind: str) -> Path:
    """Write ``scorer`` to one file and its checksum sidecar (selection verifies it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(scorer, NeuralScorer):
        payload = {
            "kind": kind,
            "cfg": asdict(scorer.cfg),
            "state": scorer.state,
            "pre": scorer.pre,
            "history_length": scorer.history_length,
            "encoder_config": scorer.encoder_config,
        }
    else:
        payload = {"kind": kind, "object": scorer}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    write_checksum(path)
    return path


def load(path: Path | str) -> tuple[str, Scorer]:
    """(kind, scorer) from a file written by :func:`save`."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if "object" in payload:
        return payload["kind"], payload["object"]
    cfg = CTRConfig(**payload["cfg"])
    cfg.cat_cardinalities = tuple(cfg.cat_cardinalities)
    cfg.mlp = tuple(cfg.mlp)
    cfg.bias_numeric = tuple(cfg.bias_numeric)
    return payload["kind"], NeuralScorer(
        cfg, payload["state"], payload["pre"], payload["history_length"], payload.get("encoder_config")
    )


def rebuild_encoder(cfg: CTRConfig, encoder_config: dict, state: dict) -> torch.nn.Module:
    """An untrained BERT of the saved architecture (LoRA-wrapped if so trained).

    The weights come from the state.
    """
    from transformers import BertConfig, BertModel

    pooler = any(".pooler." in k for k in state)
    encoder: torch.nn.Module = BertModel(BertConfig.from_dict(encoder_config), add_pooling_layer=pooler)
    if cfg.mode == "lora":
        from shoprank.models.lightning import with_lora

        encoder = with_lora(encoder, cfg.lora_rank)
    return encoder
