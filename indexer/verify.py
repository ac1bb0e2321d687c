"""Checking that SQLite, BM25, FAISS and the stored embeddings describe the same passages."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer import store
from indexer.build import BM25_DIR, EMBEDDINGS, FAISS_FILE, load_units, read_manifest
from indexer.dense import load_faiss
from indexer.layout import IndexDir
from retriever.bm25 import BM25Index


def verify_index(index: str | Path) -> list[str]:
    """Problems found in the live generation; an empty list means it is consistent."""
    generation = IndexDir(index).current()
    problems: list[str] = []
    manifest = read_manifest(generation)
    db = store.open_db(generation)
    documents = db["documents"].count
    rows = [r["row"] for r in db.query("select row from passages order by row")]
    n = len(rows)
    if rows != list(range(n)):
        problems.append("passage rows are not 0..N-1")
    if manifest["passages"] != n or manifest["documents"] != documents:
        problems.append(f"manifest says {manifest['documents']} documents / "
                        f"{manifest['passages']} passages, SQLite holds {documents} / {n}")
    orphans = next(db.query("select count(*) c from passages p left join documents d "
                            "on d.id = p.document_id where d.id is null"))["c"]
    if orphans:
        problems.append(f"{orphans} passages belong to no document")
    empty_docs = next(db.query("select count(*) c from documents d where not exists "
                               "(select 1 from passages p where p.document_id = d.id)"))["c"]
    if empty_docs:
        problems.append(f"{empty_docs} documents have no passages")
    vectors = np.load(generation / EMBEDDINGS, mmap_mode="r", allow_pickle=False)
    if n:
        bm25 = BM25Index.load(generation / BM25_DIR)
        if len(bm25) != n:
            problems.append(f"BM25 holds {len(bm25)} passages, SQLite {n}")
        owners = load_units(generation, n)
        units = len(owners)
        if units and (np.any(np.diff(owners) < 0) or owners[0] < 0 or owners[-1] >= n):
            problems.append("units.npy does not map vectors to passage rows in order")
        elif len(np.unique(owners)) != n:
            problems.append(f"{n - len(np.unique(owners))} passages have no vector")
        faiss_index = load_faiss(generation / FAISS_FILE, use_gpu=False)
        if faiss_index.ntotal != units:
            problems.append(f"FAISS holds {faiss_index.ntotal} vectors, units.npy {units}")
        if vectors.shape[0] != units:
            problems.append(f"embeddings.npy holds {vectors.shape[0]} rows, units.npy {units}")
        elif not np.allclose(np.linalg.norm(vectors[: min(units, 1000)], axis=1), 1.0,
                             atol=1e-3):
            problems.append("embeddings are not unit length")
    db.conn.close()
    return problems
