"""The BERT-CTR model: (query, user, item, context) -> P(click), and P(purchase | click).

    query text ─┐                               ┌─ cosine(q, i), q ⊙ i
    item text  ─┼─ BERT (frozen cache | fine-tune | LoRA) ─┤
                │                               └─ projections q, i
    user history (clicked items' text) ── target attention against the item ─┐
    categorical ids, numeric features ───────────────────────────────────────┼─ cross ─┬─ MLP ─ relevance
                                                                              ┘         └─ MLP ─ purchase
    position (training only) ── shallow tower ── position logit

P(click | shown at k) = sigmoid(relevance + position(k)) during training, the
position-based factorisation of the simulator and of most click logs. At serving the
position tower is dropped: scores are sigmoid(relevance), so where the legacy engine
happened to show an item does not leak into its relevance.

The purchase head (``purchase_head``) shares everything up to the cross network and has
its own MLP: its logit is P(purchase | click). It is trained ESMM-style (entire space
multi-task, Ma et al. 2018) in models/lightning.py: on every impression, on
P(click and purchase) = P(click) * P(purchase | click), never on the clicked rows alone.

Batches are dicts of tensors (B = batch, D = text dim, L = history length):
    q_emb (B, D), i_emb (B, D)        text embeddings (frozen mode; zeros for feeds)
    q_ids/q_mask, i_ids/i_mask (B, T)  token ids (fine-tune and LoRA modes)
    has_query (B,)                    1 for searches, 0 for recommendation feeds
    hist (B, L) long                  rows of `item_table` (0 = padding)
    cat (B, C) long, num (B, N)       categorical codes (0 = unknown), standardised numbers
    position (B,) long                1-based logged position (0 = unknown)
    label (B,)                        clicked
    purchased (B,)                    bought after the click (training with the purchase head)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import cast

import torch
from torch import Tensor, nn


@dataclass
class CTRConfig:
    text_dim: int = 384  # width of the text encoder's embeddings
    n_numeric: int = 0
    cat_cardinalities: tuple[int, ...] = ()  # codes per categorical column, incl. 0 = unknown
    cat_dim: int = 16
    d: int = 64  # width of projected text and of the attention space
    cross_layers: int = 2
    mlp: tuple[int, ...] = (256, 128)
    dropout: float = 0.1
    page_size: int = 20  # positions the position tower knows
    use_text: bool = True  # False: the no-text ablation (no query/item text, no history)
    use_history: bool = True
    mode: str = "frozen"  # frozen | finetune | lora
    lora_rank: int = 8
    purchase_head: bool = False  # a second tower: P(purchase | click), trained ESMM-style
    bias_numeric: tuple[int, ...] = ()  # numeric columns added by their own tower, never crossed
    extra: dict = field(default_factory=dict)  # free-form metadata kept with checkpoints

    def __post_init__(self) -> None:
        if self.mode not in ("frozen", "finetune", "lora"):
            raise ValueError(f"mode must be frozen, finetune or lora, not {self.mode!r}")


class CrossNetwork(nn.Module):
    """DCN-v2: x_{l+1} = x_0 * (W_l x_l + b_l) + x_l, explicit feature crosses of rising order."""

    def __init__(self, width: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))

    def forward(self, x0: Tensor) -> Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class TargetAttention(nn.Module):
    """Attention of the candidate item over the user's clicked items (a bilinear score).

    DIN scores each (history item, target) pair with an MLP; a bilinear form is two
    orders of magnitude cheaper per pair and what keeps CPU training fast.
    """

    def __init__(self, d: int):
        super().__init__()
        self.query = nn.Linear(d, d, bias=False)
        self.scale = d**-0.5

    def forward(self, hist: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        # hist (B, L, d), target (B, d), mask (B, L) True where a real item
        logits = torch.einsum("bld,bd->bl", hist, self.query(target)) * self.scale  # (B, L)
        logits = logits.masked_fill(~mask, -1e4)
        weights = torch.softmax(logits, dim=-1) * mask  # all-padding rows give zeros
        return torch.einsum("bl,bld->bd", weights, hist)


class BertCTR(nn.Module):
    """The scoring network; the Lightning wrapper lives in models/lightning.py."""

    def __init__(self, cfg: CTRConfig, item_table: Tensor | None = None, encoder: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        d = cfg.d
        self.encoder = encoder  # only in fine-tune / LoRA modes
        # frozen text embeddings of every item (row 0 = padding) for the user history
        table = item_table if item_table is not None else torch.zeros(1, cfg.text_dim)
        self.register_buffer("item_table", table.float(), persistent=True)
        self.cats = nn.ModuleList(nn.Embedding(n, cfg.cat_dim) for n in cfg.cat_cardinalities)
        self.q_proj = nn.Linear(cfg.text_dim, d)
        self.i_proj = nn.Linear(cfg.text_dim, d)
        self.h_proj = nn.Linear(cfg.text_dim, d)
        self.attention = TargetAttention(d)
        text_width = (3 * d + 2) if cfg.use_text else 0  # q, i, q*i, cosine, has_query
        hist_width = d if (cfg.use_text and cfg.use_history) else 0
        crossed = cfg.n_numeric - len(cfg.bias_numeric)
        width = text_width + hist_width + cfg.cat_dim * len(cfg.cat_cardinalities) + crossed
        self.input_norm = nn.LayerNorm(width)
        self.cross = CrossNetwork(width, cfg.cross_layers)
        self.mlp = tower(width, cfg.mlp, cfg.dropout)
        self.purchase_mlp = tower(width, cfg.mlp, cfg.dropout) if cfg.purchase_head else None
        # the request's shift (e.g. the shopper's day so far): one logit, the same for every candidate
        self.bias = tower(len(cfg.bias_numeric), (16,), cfg.dropout) if cfg.bias_numeric else None
        keep = [j for j in range(cfg.n_numeric) if j not in set(cfg.bias_numeric)]
        self.register_buffer("crossed_numeric", torch.tensor(keep, dtype=torch.long), persistent=False)
        self.register_buffer("bias_index", torch.tensor(cfg.bias_numeric, dtype=torch.long), persistent=False)
        # shallow: one learned logit per position, 0 = unknown/serving contributes nothing
        self.position = nn.Embedding(cfg.page_size + 1, 1)
        nn.init.zeros_(self.position.weight)

    def text(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(q, i) text embeddings (B, D), from the batch or from the encoder."""
        if self.cfg.mode == "frozen" or self.encoder is None:
            return batch["q_emb"], batch["i_emb"]
        q = self.encode(batch["q_ids"], batch["q_mask"])
        i = self.encode(batch["i_ids"], batch["i_mask"])
        return q * batch["has_query"][:, None], i

    def encode(self, ids: Tensor, mask: Tensor) -> Tensor:
        """(B, D) pooled encoder states of token rows, each distinct row encoded once.

        Rows repeat (a request's query on every one of its candidates, an item on many
        impressions), and the encoder is nearly all of the cost of a fine-tuned pass.
        """
        encoder = cast(nn.Module, self.encoder)
        width = ids.shape[1]
        rows, inverse = torch.unique(torch.cat([ids, mask], dim=1), dim=0, return_inverse=True)
        u_ids, u_mask = rows[:, :width], rows[:, width:]
        return mean_pool(encoder(input_ids=u_ids, attention_mask=u_mask), u_mask)[inverse]

    def shared(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, width) the inputs after the cross network: what both heads read."""
        parts: list[Tensor] = []
        if self.cfg.use_text:
            q, i = self.text(batch)
            cos = nn.functional.cosine_similarity(q, i, dim=-1, eps=1e-6)[:, None]
            qp, ip = self.q_proj(q), self.i_proj(i)
            parts += [qp, ip, qp * ip, cos, batch["has_query"][:, None].float()]
            if self.cfg.use_history:
                hist_idx = batch["hist"]
                # project each distinct history item once: (U, D) -> (U, d), U <= min(B * L, items)
                uniq, inverse = torch.unique(hist_idx, return_inverse=True)
                table = cast(torch.Tensor, self.item_table)  # a registered buffer
                hist = self.h_proj(table[uniq])[inverse]  # (B, L, d)
                parts.append(self.attention(hist, self.h_proj(i), hist_idx > 0))
        if self.cats:
            parts += [emb(batch["cat"][:, j]) for j, emb in enumerate(self.cats)]
        if self.cfg.n_numeric > len(self.cfg.bias_numeric):
            num = batch["num"]
            parts.append(num[:, cast(Tensor, self.crossed_numeric)] if self.cfg.bias_numeric else num)
        x = self.input_norm(torch.cat(parts, dim=-1))
        return self.cross(x)

    def relevance(self, batch: dict[str, Tensor]) -> Tensor:
        """(B,) position-free click logit: what serving and evaluation rank clicks by."""
        return self._click(self.shared(batch), batch)

    def _click(self, x: Tensor, batch: dict[str, Tensor]) -> Tensor:
        logit = self.mlp(x).squeeze(-1)
        if self.bias is not None:
            logit = logit + self.bias(batch["num"][:, cast(Tensor, self.bias_index)]).squeeze(-1)
        return logit

    def heads(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(B,) click relevance logit and (B,) logit of P(purchase | click), one shared pass."""
        if self.purchase_mlp is None:
            raise ValueError("this model has no purchase head (trained on a log without purchases)")
        x = self.shared(batch)
        return self._click(x, batch), self.purchase_mlp(x).squeeze(-1)

    def forward(self, batch: dict[str, Tensor], with_position: bool = False) -> Tensor:
        logit = self.relevance(batch)
        if with_position:
            logit = logit + self.position(batch["position"].clamp(0, self.cfg.page_size)).squeeze(-1)
        return logit

    def config_dict(self) -> dict:
        return asdict(self.cfg)


def tower(width: int, hidden: tuple[int, ...], dropout: float) -> nn.Sequential:
    """An MLP from ``width`` through ``hidden`` to one logit."""
    layers: list[nn.Module] = []
    prev = width
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
        prev = h
    return nn.Sequential(*layers, nn.Linear(prev, 1))


def mean_pool(output, mask: Tensor) -> Tensor:
    """Masked mean of the last hidden states, L2-normalised (sentence-transformers convention)."""
    hidden = output.last_hidden_state  # (B, T, H)
    m = mask[:, :, None].to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=-1)
