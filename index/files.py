"""What one index generation holds besides its SQLite file, and reading it back.

    manifest.json   counts and the settings the index was built with (embedder, backend,
                    passage and sentence-unit sizes, FAISS kind)
    embeddings.npy  one float32 vector per dense unit, in passage order
    units.npy       the passage row each vector belongs to (see units.py)
    dense.faiss     the FAISS index over those vectors
    bm25/           the BM25 matrix and vocabulary (see bm25.py)

The indexer writes these files and the retriever reads them; both ask this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .dense import load_faiss

MANIFEST = "manifest.json"


EMBEDDINGS = "embeddings.npy"


UNITS = "units.npy"  # the passage row of each embedding (see units.py)


FAISS_FILE = "dense.faiss"


BM25_DIR = "bm25"


def read_manifest(generation: Path) -> dict:
    manifest = json.loads((generation / MANIFEST).read_text())
    manifest["config"].setdefault("backend", "torch")  # indexes built before backends existed
    manifest["config"].setdefault("sentence_words", 0)  # ... and before sentence units
    return manifest


def load_units(generation: Path, passages: int) -> np.ndarray:
    """The passage row of each stored embedding (one per passage in older indexes)."""
    path = generation / UNITS
    return (np.load(path, allow_pickle=False) if path.exists()
            else np.arange(passages, dtype=np.int64))


def describe(generation: Path) -> dict:
    """What `spanqa index stats` and the API's stats show of a generation."""
    faiss = load_faiss(generation / FAISS_FILE) if (generation / FAISS_FILE).exists() else None
    return {"generation": generation.name, **read_manifest(generation),
            "faiss": type(faiss).__name__ if faiss else None}
