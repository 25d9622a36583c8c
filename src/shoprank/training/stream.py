"""The neural candidates' batches, streamed chunk by chunk: memory bounded by ``train.chunk_rows``.

Each epoch visits the chunks in a fresh random order and shuffles the rows of one chunk
at a time (the shuffle buffer is one chunk), so no more than one chunk's rows are held,
as model tensors, at once. Under DDP every rank reads each chunk and keeps its own share
of that chunk's shuffled rows (the same number on every rank, so every rank runs the
same number of steps and no collective waits for a rank that ran out). With one chunk
the transformed tensors are kept across epochs, as the in-memory path kept them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from shoprank.models.preprocess import Preprocessor, TensorData
from shoprank.training.chunks import Chunks


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks (0, 1 outside a process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StreamData(torch.utils.data.IterableDataset):
    """Batches (dicts of tensors) of ``chunks`` through ``pre``, one chunk in memory at a time.

    ``held_rows`` is the most rows held as tensors at once so far: at most ``chunks.chunk_rows``.
    """

    def __init__(
        self,
        chunks: Chunks,
        pre: Preprocessor,
        history_length: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
    ):
        super().__init__()
        self.chunks, self.pre, self.history_length = chunks, pre, history_length
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0
        self.held_rows = 0
        self._cached: TensorData | None = None
        self._sizes = [
            min(chunks.chunk_rows, chunks.rows - i * chunks.chunk_rows) for i in range(chunks.n_chunks)
        ]

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        _, world = rank_and_world()
        return sum(-(-(n // world) // self.batch_size) for n in self._sizes)

    def _tensors(self, i: int) -> TensorData:
        if self._cached is not None:
            return self._cached
        data = TensorData(self.pre.transform(self.chunks.read(i), self.history_length))
        self.held_rows = max(self.held_rows, len(data))
        if len(self._sizes) == 1:
            self._cached = data
        return data

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, world = rank_and_world()
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(len(self._sizes)) if self.shuffle else np.arange(len(self._sizes))
        for i in order:
            data = self._tensors(int(i))
            rows = rng.permutation(len(data)) if self.shuffle else np.arange(len(data))
            share = rows[: len(rows) - len(rows) % world][rank::world]
            for lo in range(0, len(share), self.batch_size):
                yield data[torch.from_numpy(share[lo : lo + self.batch_size])]
            del data


def stream_loader(data: StreamData) -> torch.utils.data.DataLoader:
    """The loader Lightning iterates: the dataset yields whole batches already."""
    return torch.utils.data.DataLoader(data, batch_size=None)
