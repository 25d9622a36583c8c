"""A tokenizer that travels inside a model: its files as bytes, loaded offline once per process.

A fine-tuned BERT-CTR tokenizes its texts at every prediction (evaluation, drift,
serving). Its tokenizer's files are kept in the scorer artifact, so wherever the artifact
goes (a champion copied into a bundle, an experiment's arm, another machine) it tokenizes
exactly as in training, without the model folder it was trained from and without a network.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np


class PackedTokenizer:
    """The files of a Hugging Face tokenizer, and ``max_length``: ``(ids, mask)`` of texts."""

    def __init__(self, files: dict[str, bytes], max_length: int):
        self.files, self.max_length = files, max_length
        self._loaded: Any = None
        self._lock = threading.RLock()

    @classmethod
    def of(cls, tokenizer: Any, max_length: int) -> PackedTokenizer:
        """Pack a loaded tokenizer (``save_pretrained`` into a temporary folder, read back as bytes)."""
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer.save_pretrained(tmp)
            files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
        return cls(files, max_length)

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files, "max_length": self.max_length}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["files"], state["max_length"])  # type: ignore[misc]

    def load(self) -> Any:
        """The tokenizer, read offline from the packed files (once; later calls reuse it)."""
        with self._lock:
            if self._loaded is None:
                from shoprank.text.encoder import load_tokenizer

                with tempfile.TemporaryDirectory() as tmp:
                    for name, data in self.files.items():
                        (Path(tmp) / name).write_bytes(data)
                    self._loaded = load_tokenizer(Path(tmp))  # a fast tokenizer keeps what it read
            return self._loaded

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, attention mask), each (n, max_length) int64; each distinct text tokenized once."""
        if not len(texts):
            empty = np.zeros((0, self.max_length), np.int64)
            return empty, empty.copy()
        uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        # a fast tokenizer sets its padding state on each call: one call at a time per process
        with self._lock:
            enc = self.load()(
                [str(t) for t in uniq],
                padding="max_length",
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
        ids = enc["input_ids"].astype(np.int64).reshape(len(uniq), -1)
        mask = enc["attention_mask"].astype(np.int64).reshape(len(uniq), -1)
        return ids[inverse.reshape(-1)], mask[inverse.reshape(-1)]
