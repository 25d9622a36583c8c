"""The text encoder on ONNX Runtime: the same vectors as :class:`TextEncoder`, faster for
the one-query batches that serving encodes (bench/bench_embeddings.py measures both).

Why: serving embeds a query the platform has never seen with one BERT pass on the request
thread. On CPU, eager PyTorch spends most of that pass in small matrix products that its
MKL kernels run slowly on AMD cores; ONNX Runtime's own kernels run the same graph
several times faster. The weights are the same
fp32 weights, so the vectors agree with the PyTorch encoder to float rounding (checked at
export, recorded beside the graph) and the stored query embeddings the model was trained
on stay interchangeable with freshly encoded ones. Quantised (int8) or bf16 graphs are
faster still but move the vectors away from the ones the model was trained on: not used.

:func:`export` writes a folder ``model.onnx`` + the tokenizer + ``encoder.json`` (the
PyTorch encoder's key, max_length, dim and the parity check); :meth:`OnnxTextEncoder.load`
reads it with onnxruntime only (no torch model, no weights folder).

Batch encoding (``shoprank features``, ``text.runtime``) gains too, though less than a
single query does. :func:`batch_encoder` gives the
features stage an encoder that exports on its first real batch (into the embedding
cache folder, once per model key), checks that batch both ways, and encodes on ONNX
Runtime from then on; the vectors keep the PyTorch encoder's key, so the embedding
cache is shared by both runtimes.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from shoprank.logs import log
from shoprank.text.encoder import TextEncoder, encode_batched, load_tokenizer

logger = logging.getLogger(__name__)

GRAPH = "model.onnx"
META = "encoder.json"
OPSET = 17
PARITY_TOLERANCE = 1e-4  # largest |difference| of any vector component that export accepts
PARITY_TEXTS = 64  # texts of the first batch that an export is checked on
RECHECK_TEXTS = 8  # texts a reused export is checked on again (a damaged file fails here)


class ExportError(RuntimeError):
    """The ONNX graph could not be written or does not reproduce the PyTorch encoder."""


class OnnxTextEncoder:
    """``encode(texts)`` like :class:`TextEncoder`, on an exported ONNX graph."""

    runtime = "onnx"

    def __init__(self, session: Any, tokenizer: Any, meta: dict[str, Any], batch_size: int = 64):
        self.session = session
        self.tokenizer = tokenizer
        self.key: str = meta["key"]
        self.name: str = meta.get("name", "onnx")
        self.max_length = int(meta["max_length"])
        self.dim = int(meta["dim"])
        self.batch_size = batch_size
        self.meta = meta
        self.device = "cpu"

    @classmethod
    def load(
        cls, folder: Path | str, threads: int = 1, batch_size: int = 64, spinning: bool = False
    ) -> OnnxTextEncoder:
        """The encoder exported into ``folder``; ``threads`` intra-op threads (serving: 1 per worker).

        ``spinning``: idle pool threads spin for the next piece of work (batch encoding on
        otherwise idle cores, faster); off, they sleep (serving: cores are shared).
        """
        import onnxruntime as ort

        folder = Path(folder)
        meta_path = folder / META
        if not meta_path.is_file() or not (folder / GRAPH).is_file():
            raise FileNotFoundError(f"{folder}: no exported encoder ({GRAPH} and {META})")
        meta = json.loads(meta_path.read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        session = ort.InferenceSession(str(folder / GRAPH), options, providers=["CPUExecutionProvider"])
        return cls(session, load_tokenizer(folder), meta, batch_size)

    def __repr__(self) -> str:
        return f"OnnxTextEncoder(key={self.key!r}, dim={self.dim})"

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` -> (len(texts), dim) float32 unit vectors (see :meth:`TextEncoder.encode`)."""
        return encode_batched(texts, self.batch_size, self.dim, self._encode_batch)

    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        tokens = self.tokenizer(
            batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        ids = tokens["input_ids"].astype(np.int64, copy=False)
        mask = tokens["attention_mask"].astype(np.int64, copy=False)
        # the graph's only inputs (see export): BERT's token types default to zeros inside it
        (hidden,) = self.session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)


def export(encoder: TextEncoder, folder: Path | str, check_texts: list[str]) -> dict[str, Any]:
    """Write ``encoder`` as an ONNX graph into ``folder`` and check it against PyTorch.

    ``check_texts`` (a few dozen of the texts it will see) are encoded both ways; the
    export fails (:class:`ExportError`) if any vector component differs by more than
    ``PARITY_TOLERANCE``. Returns the metadata written to ``encoder.json``.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not check_texts:
        raise ExportError("export needs texts to check the graph against the PyTorch encoder")

    class Transformer(torch.nn.Module):  # tensors in, last hidden state out: what ONNX can trace
        def __init__(self, model: torch.nn.Module):
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    started = time.perf_counter()
    sample = encoder.tokenizer(["an example query", "x"], padding=True, return_tensors="pt")
    # eval() on the wrapper too: export restores the module's mode afterwards, and a new Module
    # is in training mode, which would switch dropout on in the encoder it wraps
    wrapper = Transformer(encoder.model.to("cpu")).eval()
    dynamic = {0: "batch", 1: "tokens"}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes: checked below
            torch.onnx.export(
                wrapper,
                (sample["input_ids"], sample["attention_mask"]),
                str(folder / GRAPH),
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "last_hidden_state": dynamic},
                opset_version=OPSET,
                dynamo=False,  # the TorchScript exporter: no onnxscript dependency, dynamic axes as given
            )
    except Exception as exc:
        raise ExportError(f"ONNX export of {encoder.name} failed: {exc!r}"[:500]) from exc
    finally:
        encoder.model.to(encoder.device).eval()
    encoder.tokenizer.save_pretrained(str(folder))
    meta: dict[str, Any] = {
        "key": encoder.key,
        "name": encoder.name,
        "max_length": encoder.max_length,
        "dim": encoder.dim,
        "opset": OPSET,
    }
    (folder / META).write_text(json.dumps(meta, indent=2))
    reference = encoder.encode(check_texts)
    exported = OnnxTextEncoder.load(folder).encode(check_texts)
    diff = float(np.abs(reference - exported).max())
    meta.update(
        parity_texts=len(check_texts),
        parity_max_abs_diff=diff,
        export_seconds=round(time.perf_counter() - started, 2),
    )
    (folder / META).write_text(json.dumps(meta, indent=2))
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(
            f"the ONNX graph's vectors differ from PyTorch's by up to {diff:.2e} "
            f"(tolerance {PARITY_TOLERANCE:.0e}) on {len(check_texts)} texts"
        )
    return meta


def runtime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def batch_encoder(encoder: TextEncoder, runtime: str, cache_dir: Path | str) -> Any:
    """The encoder that ``runtime`` (``text.runtime``) asks for, for batch encoding.

    ``torch``: ``encoder`` itself. ``onnx``: an :class:`ExportedEncoder` (exports lazily into
    ``<cache_dir>/onnx/<key>``). ``auto``: ONNX on CPU when onnxruntime is installed, else
    PyTorch (on a GPU PyTorch is the faster one).
    """
    if runtime not in ("auto", "torch", "onnx"):
        raise ValueError(f"text.runtime must be auto, torch or onnx, got {runtime!r}")
    if runtime == "torch" or (runtime == "auto" and (encoder.device != "cpu" or not runtime_available())):
        return encoder
    from shoprank.text.cache import folder_name

    return ExportedEncoder(encoder, Path(cache_dir) / "onnx" / folder_name(encoder.key))


class ExportedEncoder:
    """``encode`` on ONNX Runtime, exported from ``encoder`` when first needed; PyTorch if that fails.

    The export happens on the first call with texts (a stage whose texts are all cached
    never pays for it), is checked on that call's first texts, and is kept in ``folder``
    for the next run. Every run checks the graph again on a few of its first texts.
    """

    def __init__(self, encoder: TextEncoder, folder: Path):
        self.torch = encoder
        self.folder = folder
        self.key, self.dim, self.name = encoder.key, encoder.dim, encoder.name
        self.max_length, self.device = encoder.max_length, "cpu"
        self.runtime: str | None = None  # onnx or torch once decided
        self._onnx: OnnxTextEncoder | None = None

    def __repr__(self) -> str:
        return f"ExportedEncoder(key={self.key!r}, runtime={self.runtime})"

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.runtime is None and len(texts):
            self._decide(texts)
        if self._onnx is not None:
            return self._onnx.encode(texts)
        return self.torch.encode(texts)

    def _decide(self, texts: list[str]) -> None:
        import torch

        threads = torch.get_num_threads()
        try:
            if not (self.folder / META).is_file():
                self._export(texts)
            onnx = OnnxTextEncoder.load(self.folder, threads, self.torch.batch_size, spinning=True)
            sample = list(texts[:RECHECK_TEXTS])  # a damaged or foreign graph fails here
            diff = float(np.abs(onnx.encode(sample) - self.torch.encode(sample)).max())
            if onnx.key != self.key or not diff <= PARITY_TOLERANCE:
                raise ExportError(f"{self.folder}: the kept export does not match (max diff {diff:.2e})")
        except Exception as exc:  # slower, never wrong: PyTorch computes the same vectors
            log(
                logger,
                "encoding with PyTorch: ONNX export unusable",
                error=repr(exc)[:300],
                level=logging.WARNING,
            )
            self.runtime = "torch"
            return
        self._onnx, self.runtime = onnx, "onnx"
        log(logger, "encoding with ONNX Runtime", folder=str(self.folder), threads=threads)

    def _export(self, texts: list[str]) -> None:
        """Export into a staging folder, checked on ``texts``, then move it into place whole."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=self.folder.parent))
        try:
            export(self.torch, staging, list(texts[:PARITY_TEXTS]))
            staging.rename(self.folder)
        except OSError:  # another process put its export there first: that one is used
            if not (self.folder / META).is_file():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
