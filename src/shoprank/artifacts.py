"""Names and files that the pipeline's steps and the service share.

Training writes scorers, selection promotes them, evaluation reads the Feast feature
service, packaging writes the bundle and serving reads it. Each of them imports these
names from here rather than from another step, so serving never imports training or
evaluation code; this module imports nothing of shoprank.

Checksums: a scorer is written with a ``<artifact>.sha256`` sidecar (sha256sum format)
at training time; selection promotes an artifact only if it still matches it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

# The Feast feature services (features/feature_services.py defines them under these names).
FEATURE_SERVICE = "ctr_model_v1"  # every feature, text embeddings included: what the champion reads
TEXT_FREE_SERVICE = "text_free_v1"  # the no-text ablation: no item or query embeddings

# The bundle: one folder in the BentoML model store, written by `shoprank package`.
MODEL_NAME = "shoprank-ranker"  # its BentoML model name
MANIFEST = "manifest.json"  # champion record and lineage, feature service, encoder, counts
SCORER = "scorer.pt"  # the champion artifact
ITEMS = "items.parquet"  # catalog facts and each item's latest features
USERS = "users.parquet"  # each user's latest features
RETRIEVAL_DIR = "retrieval"  # BM25 and nearest-neighbour indexes
RECOMMEND_DIR = "recommend"  # the feeds' click tables: co-clicked neighbours, recent clicks per item
UNDERSTANDING = "understanding.pkl"  # intent and attribute heads (optional)
ATTRIBUTES = "attributes.parquet"  # the catalogue's missing attribute values filled from the item's text
ENCODER_DIR = "encoder"  # the query encoder as ONNX (optional)
ARMS_DIR = "arms"  # an online experiment's challenger models, one <arm name>.pt each (optional)

CHECKSUM_SUFFIX = ".sha256"


def sha256_of(path: Path | str) -> str:
    """The hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(artifact: Path | str) -> Path:
    """Where ``artifact``'s checksum is kept: ``<artifact>.sha256`` beside it."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + CHECKSUM_SUFFIX)


def write_checksum(artifact: Path | str) -> str:
    """At training time: write ``<artifact>.sha256`` (sha256sum format) and return the digest."""
    artifact = Path(artifact)
    digest = sha256_of(artifact)
    atomic_write(checksum_path(artifact), f"{digest}  {artifact.name}\n")
    return digest


def recorded_checksum(artifact: Path | str) -> str | None:
    """The digest written by :func:`write_checksum`, or None when there is no checksum file."""
    sidecar = checksum_path(artifact)
    if not sidecar.is_file():
        return None
    return (sidecar.read_text().split() or [""])[0]  # sha256sum format: "<hex>  <name>"


def atomic_write(path: Path, text: str) -> None:
    """Write a complete, fsynced temporary file beside ``path``, then os.replace it.

    A crash leaves either the old file or the new one, never a partial one.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
