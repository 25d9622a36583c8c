"""Contrastive fine-tuning of a :class:`~shoprank.text.TextEncoder` and retrieval scores.

:func:`fine_tune` trains a copy of the encoder on (query, item text) pairs with the
multiple-negatives ranking loss: in a batch of pairs, each query's positive is its own
item and every other item of the batch is a negative (a softmax over ``scale`` times the
cosine similarities). Pooling is the encoder's own (mean over tokens, L2-normalised), so
the trained weights encode the way :class:`TextEncoder` reads them. Items or queries that
occur twice in one batch are not counted as each other's negatives: a shopper who clicked
two items for one query did not reject either.

:func:`retrieval_scores` ranks the whole catalogue for each held-out query and reports
recall@k and the mean reciprocal rank of the item that was clicked.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from shoprank.logs import log
from shoprank.text.encoder import TextEncoder

if TYPE_CHECKING:  # pragma: no cover - typing only
    from shoprank.config import Adapt

logger = logging.getLogger(__name__)


def _codes(values: list[str]) -> np.ndarray:
    """Equal strings -> equal integer codes."""
    return np.unique(np.asarray(values, dtype=object), return_inverse=True)[1].reshape(-1)


def _pooled(model: Any, tokenizer: Any, texts: list[str], max_length: int, device: str) -> Any:
    """Mean-pooled, L2-normalised token states, with gradients (TextEncoder's pooling)."""
    import torch

    tokens = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(
        device
    )
    hidden = model(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def fine_tune(
    encoder: TextEncoder, queries: list[str], items: list[str], settings: Adapt, name: str = "adapted"
) -> tuple[TextEncoder, dict[str, Any]]:
    """A new encoder: a copy of ``encoder`` trained on the pairs ``(queries[i], items[i])``.

    ``encoder`` itself is left as it was. Returns the trained encoder (named ``name``, its
    key the fingerprint of the new weights) and what the training did (steps, loss, seconds).
    """
    import torch

    if len(queries) != len(items):
        raise ValueError(f"{len(queries)} queries but {len(items)} item texts")
    if len(queries) < 2:
        raise ValueError(
            "contrastive fine-tuning needs at least two pairs (a pair's negatives are the others)"
        )
    started = time.perf_counter()
    device = encoder.device
    model = copy.deepcopy(encoder.model).to(device).train()  # train(): dropout, as in pre-training
    q_codes, i_codes = _codes(queries), _codes(items)
    n, batch = len(queries), min(settings.batch_size, len(queries))
    per_epoch = math.ceil(n / batch)
    total = per_epoch * settings.epochs
    warmup = max(1, int(settings.warmup_share * total))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    rng = np.random.default_rng(settings.seed)
    losses: list[float] = []
    step = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)  # dropout masks: the same run gives the same weights
        for epoch in range(settings.epochs):
            order = rng.permutation(n)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                if len(idx) < 2:  # a lone pair has no negatives
                    continue
                loss = _step_loss(model, encoder, queries, items, idx, q_codes, i_codes, settings)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                losses.append(float(loss.detach()))
                step += 1
                if step % settings.log_every == 0 or step == total:
                    log(
                        logger,
                        "adapt progress",
                        epoch=epoch + 1,
                        step=f"{step}/{total}",
                        loss=round(float(np.mean(losses[-settings.log_every :])), 4),
                        seconds=round(time.perf_counter() - started, 1),
                    )
    model.eval()
    trained = TextEncoder(model, encoder.tokenizer, name, encoder.max_length, encoder.batch_size, device)
    report = {
        "pairs": n,
        "epochs": settings.epochs,
        "steps": step,
        "first_loss": round(float(np.mean(losses[: settings.log_every])), 4) if losses else None,
        "last_loss": round(float(np.mean(losses[-settings.log_every :])), 4) if losses else None,
        "device": device,
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    return trained, report


def _step_loss(
    model: Any,
    encoder: TextEncoder,
    queries: list[str],
    items: list[str],
    idx: np.ndarray,
    q_codes: np.ndarray,
    i_codes: np.ndarray,
    settings: Adapt,
) -> Any:
    """The in-batch softmax cross-entropy of one batch of pairs (row i's positive: column i)."""
    import torch

    q = _pooled(model, encoder.tokenizer, [queries[i] for i in idx], settings.max_length, encoder.device)
    d = _pooled(model, encoder.tokenizer, [items[i] for i in idx], settings.max_length, encoder.device)
    logits = settings.scale * q @ d.T
    qc, ic = q_codes[idx], i_codes[idx]
    duplicate = (ic[:, None] == ic[None, :]) | (qc[:, None] == qc[None, :])
    np.fill_diagonal(duplicate, False)  # another clicked item of the same query is no negative
    logits = logits.masked_fill(torch.from_numpy(duplicate).to(logits.device), float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(idx), device=logits.device))


def retrieval_scores(
    query_vecs: np.ndarray, item_vecs: np.ndarray, pairs: np.ndarray, k: int = 10
) -> dict[str, float]:
    """Recall@k and MRR of held-out pairs over the whole catalogue.

    ``query_vecs`` (q, dim) and ``item_vecs`` (n, dim) are unit vectors; ``pairs`` (m, 2)
    holds (query row, item row). An item's rank is one plus the number of catalogue items
    its query scores strictly higher (ties go in its favour).
    """
    if len(pairs) == 0:
        return {f"recall@{k}": float("nan"), "mrr": float("nan"), "pairs": 0}
    ranks = np.empty(len(pairs), dtype=np.int64)
    for start in range(0, len(pairs), 512):  # (512, n) similarities at a time
        chunk = pairs[start : start + 512]
        sims = query_vecs[chunk[:, 0]] @ item_vecs.T
        positive = sims[np.arange(len(chunk)), chunk[:, 1]]
        ranks[start : start + len(chunk)] = 1 + (sims > positive[:, None]).sum(axis=1)
    return {
        f"recall@{k}": round(float((ranks <= k).mean()), 4),
        "mrr": round(float((1.0 / ranks).mean()), 4),
        "pairs": int(len(pairs)),
    }
