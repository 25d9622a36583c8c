"""Collaborative filtering: logistic matrix factorisation of shoppers and items.

``P(click) = sigmoid(b + b_user + b_item + <p_user, q_item> + b_position)``, fitted with
PyTorch on the clicks of the training split (every impression is an example: shown and
not clicked is a negative, which implicit-feedback libraries such as ALS cannot use).
Ids seen fewer than ``min_count`` times share one learned fallback row (index 0), which
is also what an id never seen in training gets: rare and new shoppers and items are
scored by the fallback's factors and the biases of what is known. The item factors are
what ``/recommend`` retrieves neighbours with.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from shoprank.config import CF
from shoprank.inputs.frame import Frame
from shoprank.models.preprocess import FeatureSpec, codes_of

SERVING_POSITION = 1  # position-free scores are those of the top slot
Scan = Callable[[list[str]], Iterable[pd.DataFrame]]  # columns -> a split's rows, chunk by chunk


class Factors(nn.Module):
    def __init__(self, n_users: int, n_items: int, n_positions: int, dim: int):
        super().__init__()
        self.user = nn.Embedding(n_users + 1, dim)
        self.item = nn.Embedding(n_items + 1, dim)
        self.user_bias = nn.Embedding(n_users + 1, 1)
        self.item_bias = nn.Embedding(n_items + 1, 1)
        self.position = nn.Embedding(n_positions + 1, 1)
        self.bias = nn.Parameter(torch.zeros(1))
        for e in (self.user, self.item):
            nn.init.normal_(e.weight, std=0.01)
        for e in (self.user_bias, self.item_bias, self.position):
            nn.init.zeros_(e.weight)

    def forward(self, u: torch.Tensor, i: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        dot = (self.user(u) * self.item(i)).sum(-1)
        return self.bias + self.user_bias(u)[:, 0] + self.item_bias(i)[:, 0] + dot + self.position(pos)[:, 0]


class CollaborativeModel:
    """A candidate: ``fit`` on the training split, ``predict(frame, with_position)`` like the others."""

    def __init__(self, settings: CF | None = None, seed: int = 0):
        self.settings = settings or CF()
        self.seed = seed

    def _codes(self, df: pd.DataFrame, with_position: bool = True) -> tuple[torch.Tensor, ...]:
        s = self.spec
        u = df[s.user_id].astype("string").map(self.users).fillna(0).to_numpy(np.int64)
        i = df[s.item_id].astype("string").map(self.items).fillna(0).to_numpy(np.int64)
        pos = (
            df[s.position].fillna(SERVING_POSITION)
            if with_position
            else pd.Series(SERVING_POSITION, df.index)
        )
        p = np.clip(pos.to_numpy(np.int64), 0, self.n_positions)
        return torch.from_numpy(u), torch.from_numpy(i), torch.from_numpy(p)

    def fit(self, train: Frame, val: Frame, spec: FeatureSpec) -> CollaborativeModel:
        return self.fit_chunks(lambda columns: [train.df], lambda columns: [val.df], spec)

    def fit_chunks(self, train: Scan, val: Scan, spec: FeatureSpec) -> CollaborativeModel:
        """Fit on the splits read in chunks: ``train(columns)`` gives the training split's rows
        chunk by chunk (twice: the vocabularies, then the codes), ``val(columns)`` the validation
        split's. Only the ids' codes, positions and labels are kept, four numbers a row."""
        s = self.settings
        torch.manual_seed(self.seed)
        self.spec = spec
        columns = [spec.user_id, spec.item_id, spec.position, spec.label]
        users, items, top = pd.Series(dtype="int64"), pd.Series(dtype="int64"), 1.0
        for df in train(columns):
            users = users.add(df[spec.user_id].astype("string").value_counts(), fill_value=0)
            items = items.add(df[spec.item_id].astype("string").value_counts(), fill_value=0)
            top = max(top, float(df[spec.position].max()) if len(df) else top)
        self.users, self.items = codes_of(users, s.min_count), codes_of(items, s.min_count)
        self.n_positions = int(top)
        model = Factors(len(self.users), len(self.items), self.n_positions, s.dim)
        opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        loss = nn.BCEWithLogitsLoss()
        *tr, y_tr = self._coded(train(columns))
        *va, y_va = self._coded(val(columns))
        gen = torch.Generator().manual_seed(self.seed)
        best, best_state, waited = float("inf"), copy.deepcopy(model.state_dict()), 0
        for _ in range(s.epochs):
            model.train()
            for batch in torch.randperm(len(y_tr), generator=gen).split(s.batch_size):
                opt.zero_grad()
                loss(model(*(t[batch] for t in tr)), y_tr[batch]).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                val_loss = float(loss(model(*va), y_va)) if len(y_va) else 0.0
            if val_loss < best - 1e-5:
                best, best_state, waited = val_loss, copy.deepcopy(model.state_dict()), 0
            else:
                waited += 1
                if waited > s.patience:
                    break
        model.load_state_dict(best_state)
        self.model = model.eval()
        self.best_val_loss = best
        return self

    def _coded(self, chunks: Iterable[pd.DataFrame]) -> list[torch.Tensor]:
        """User, item and position codes and the labels of every row of ``chunks``, concatenated."""
        parts = [
            (*self._codes(df), torch.from_numpy(df[self.spec.label].to_numpy(np.float32))) for df in chunks
        ]
        if not parts:
            return [torch.zeros(0, dtype=torch.int64)] * 3 + [torch.zeros(0)]
        return [torch.cat(column) for column in zip(*parts, strict=True)]

    @torch.no_grad()
    def predict(self, frame: Frame, with_position: bool = False) -> np.ndarray:
        return torch.sigmoid(self.model(*self._codes(frame.df, with_position))).numpy().astype(np.float64)

    def item_factors(self) -> tuple[list[str], np.ndarray]:
        """(item ids, their factors): the items with their own row, for neighbour retrieval."""
        ids = sorted(self.items, key=self.items.__getitem__)
        return ids, self.model.item.weight.detach().numpy()[1:].copy()

    def retrieval_arrays(self) -> dict[str, np.ndarray]:
        """What a feed retrieves with: the frequent shoppers' and items' factors and the item biases.

        ``score(user, item) = item_bias + <user, item>`` orders one shopper's items as the
        model does (the global and user biases and the position do not change the order).
        """
        users = sorted(self.users, key=self.users.__getitem__)
        items, item_vecs = self.item_factors()
        return {
            "user_ids": np.asarray(users, dtype=str),
            "user_factors": self.model.user.weight.detach().numpy()[1:].astype(np.float32),
            "item_ids": np.asarray(items, dtype=str),
            "item_factors": item_vecs.astype(np.float32),
            "item_bias": self.model.item_bias.weight.detach().numpy()[1:, 0].astype(np.float32),
        }
