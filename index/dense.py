"""FAISS indexes over normalised embeddings (inner product = cosine similarity).

Exact search is fast enough up to tens of thousands of vectors; beyond that HNSW keeps
queries in milliseconds at a small cost in recall. The choice is made by size unless set.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw", "ivf")
EXACT_UP_TO = 50_000  # vectors; "auto" switches to HNSW above this


def choose_kind(n: int, kind: str = "auto") -> str:
    if kind not in KINDS:
        raise ValueError(f"FAISS index kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "auto":
        return kind
    return "flat" if n <= EXACT_UP_TO else "hnsw"


def build_faiss(vectors: np.ndarray, kind: str = "auto") -> faiss.Index:
    """An index whose ids are the row numbers of `vectors`."""
    n, dim = vectors.shape
    kind = choose_kind(n, kind)
    if kind == "flat" or n == 0:
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    else:
        lists = max(1, min(4096, int(4 * np.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = max(1, lists // 16)
    if n:
        index.add(vectors)
    return index


def save_faiss(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load_faiss(path: Path, use_gpu: bool | None = None) -> faiss.Index:
    """Read an index; moved to the GPU when the faiss-gpu build and a GPU are present."""
    index = faiss.read_index(str(path))
    if use_gpu is None:
        use_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if use_gpu and not isinstance(index, faiss.IndexHNSW):  # HNSW has no GPU version
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, 0, index)
        index.resources = resources  # keep alive as long as the index
    return index
