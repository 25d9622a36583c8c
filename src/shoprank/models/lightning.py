"""Lightning wrapper of BertCTR: loss, optimiser schedule, metrics, modes.

With the purchase head the loss is ESMM's: log loss of P(click) and of
P(click and purchase) = P(click) * P(purchase | click), both over every impression. The
purchase head then learns from the whole space the service ranks, not only from the
clicked rows (whose shoppers and items differ from the rest: a sample selection bias),
and it learns from the many unclicked rows too, where purchases are rarest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
from torch import Tensor, nn

from shoprank.models.bert_ctr import BertCTR, CTRConfig


@dataclass
class OptimConfig:
    lr: float = 2e-3
    encoder_lr: float = 3e-5  # fine-tune / LoRA: the pretrained encoder moves slowly
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    total_steps: int = 10_000  # for the decay; the Trainer may stop earlier


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warmup to 1, then cosine decay to 0.05 at ``total``."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


class LitCTR(L.LightningModule):
    def __init__(
        self,
        cfg: CTRConfig,
        optim: OptimConfig,
        item_table: Tensor | None = None,
        encoder: nn.Module | None = None,
    ):
        super().__init__()
        self.save_hyperparameters({"cfg": cfg.__dict__, "optim": optim.__dict__})
        if cfg.mode == "lora" and encoder is not None:
            encoder = with_lora(encoder, cfg.lora_rank)
        self.model = BertCTR(cfg, item_table, encoder)
        self.optim = optim
        self.loss = nn.BCEWithLogitsLoss()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Serving score: P(click) without the position tower."""
        return torch.sigmoid(self.model.relevance(batch))

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        if self.model.purchase_mlp is None:
            logits = self.model(batch, with_position=True)
            loss = self.loss(logits, batch["label"].float())
        else:
            logits, buy = self.model.heads(batch)
            logits = logits + self.model.position(
                batch["position"].clamp(0, self.model.cfg.page_size)
            ).squeeze(-1)
            click_loss = self.loss(logits, batch["label"].float())
            loss = click_loss + esmm_purchase_loss(logits, buy, batch["purchased"].float())
            self.log(f"{stage}_click_loss", click_loss, on_step=False, on_epoch=True, batch_size=len(logits))
        self.log(
            f"{stage}_loss",
            loss,
            prog_bar=True,
            on_step=stage == "train",
            on_epoch=True,
            batch_size=len(logits),
            sync_dist=stage != "train",
        )
        return loss

    def training_step(self, batch: dict[str, Tensor], _: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], _: int) -> Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self):
        encoder = [p for n, p in self.named_parameters() if ".encoder." in n and p.requires_grad]
        encoder_ids = {id(p) for p in encoder}
        head = [p for p in self.parameters() if p.requires_grad and id(p) not in encoder_ids]
        groups = [{"params": head, "lr": self.optim.lr}]
        if encoder:
            groups.append({"params": encoder, "lr": self.optim.encoder_lr})
        opt = torch.optim.AdamW(groups, weight_decay=self.optim.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, self.optim.warmup_steps, self.optim.total_steps)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def esmm_purchase_loss(click_logit: Tensor, purchase_logit: Tensor, purchased: Tensor) -> Tensor:
    """Mean log loss of P(click and purchase) = sigmoid(click) * sigmoid(purchase) on ``purchased``.

    In log space, so neither factor's underflow turns into an infinite loss:
    log p = logsigmoid(a) + logsigmoid(b), log(1 - p) = log(-expm1(log p)).
    """
    log_p = nn.functional.logsigmoid(click_logit) + nn.functional.logsigmoid(purchase_logit)
    log_not = torch.log(-torch.expm1(log_p.clamp(max=-1e-6)))
    return -(purchased * log_p + (1 - purchased) * log_not).mean()


def with_lora(encoder: nn.Module, rank: int) -> nn.Module:
    """Freeze ``encoder`` and add trainable low-rank adapters to its attention projections."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05, target_modules=["query", "value"])
    return get_peft_model(encoder, config)
