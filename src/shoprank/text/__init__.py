"""BERT text encoder (offline weights) and the embedding cache.

Importing this package is cheap: torch and transformers load only when an encoder is
built.

    from shoprank.text import EmbeddingCache, load_encoder

    encoder = load_encoder(params.text)                  # all-MiniLM-L6-v2, 384-dim
    cache = EmbeddingCache(params.text.cache_dir, encoder.key)
    vecs = cache.embed(texts, encoder)                   # (len(texts), 384) float32, unit norm
"""

from shoprank.text.cache import EmbeddingCache, embed
from shoprank.text.encoder import ModelNotFoundError, TextEncoder, load_encoder, resolve_model_dir

__all__ = [
    "EmbeddingCache",
    "ModelNotFoundError",
    "TextEncoder",
    "embed",
    "load_encoder",
    "resolve_model_dir",
]
