"""Sentence embeddings for dense retrieval: normalised, so inner product is cosine."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "minilm"  # the pretrained all-MiniLM-L6-v2 shipped on PyPI: builds offline


def resolve_embedder(name: str) -> str:
    """The offline alias to its directory; sentence-transformers names and paths unchanged."""
    if name == DEFAULT_EMBEDDER:
        from reader.models import offline_encoder_path

        return str(offline_encoder_path())
    return name


class Embedder:
    """A sentence-transformers model on the GPU when there is one."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, device: str | None = None,
                 batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.batch_size = batch_size
        self.model = SentenceTransformer(resolve_embedder(name), device=device)
        dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = int(dim())

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """float32 rows of unit length, one per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
