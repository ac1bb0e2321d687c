"""Checking that SQLite, BM25, FAISS and the stored embeddings describe the same passages,
and that the JSON the index stores (manifest, document metadata) is strict JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sqlite_utils

from . import store
from .bm25 import BM25Index
from .dense import load_faiss
from .files import BM25_DIR, EMBEDDINGS, FAISS_FILE, MANIFEST, load_units, read_manifest
from .layout import IndexDir


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
    problems.extend(_json_problems(db, generation))
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


_NAMED = 5  # offending rows a problem names; the rest are counted


def _json_problems(db: sqlite_utils.Database, generation: Path) -> list[str]:
    """Stored JSON that strict JSON readers refuse: the manifest, and document metadata
    that SQLite's `json_valid` rejects or that holds NaN/Infinity (which Python reads
    without complaint, but SQLite's JSON functions do not: every tag-filtered search would
    fail on such a row)."""
    problems: list[str] = []
    try:
        store.strict_loads((generation / MANIFEST).read_text(encoding="utf-8"))
    except ValueError as exc:
        problems.append(f"{MANIFEST} is not strict JSON ({exc})")
    bad: list[str] = []
    rows = db.query("select id, path, metadata, json_valid(metadata) as valid from documents "
                    "where metadata is not null order by id")
    for row in rows:
        reason = None if row["valid"] else "SQLite's json_valid rejects it"
        try:
            store.strict_loads(row["metadata"])
        except (TypeError, ValueError) as exc:
            reason = str(exc)
        if reason is not None:
            bad.append(f"document {row['id']} ({row['path']}): {reason}")
    if bad:
        more = f"; and {len(bad) - _NAMED} more" if len(bad) > _NAMED else ""
        problems.append(f"{len(bad)} documents have metadata that is not strict JSON "
                        f"(remove them, `spanqa index remove ID`, or rebuild the index): "
                        + "; ".join(bad[:_NAMED]) + more)
    return problems
