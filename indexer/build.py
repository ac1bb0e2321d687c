"""Building and updating an index: documents -> passages -> SQLite + BM25 + FAISS.

Every update writes a complete new generation (see layout.py) and publishes it at the
end, so the SQLite rows, the BM25 matrix and the FAISS index always come from one
consistent set of passages. Passages of unchanged documents keep their embeddings: only
new and changed documents are embedded.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..index import store
from ..index.bm25 import BM25Index
from ..index.dense import build_faiss, save_faiss
from ..index.files import (
    BM25_DIR,
    EMBEDDINGS,
    FAISS_FILE,
    MANIFEST,
    UNITS,
    load_units,
    read_manifest,
)
from ..index.layout import IndexDir
from ..index.records import Document, Passage, Skipped
from ..index.text import searchable_text, tokenize
from ..runtime.embedder import DEFAULT_EMBEDDER, Embedder, resolve_embedder
from .chunking import ChunkConfig, chunk_document
from .formats import MAX_FILE_BYTES, iter_documents
from .isolation import Cancelled, open_reader
from .limits import DEFAULT_LIMITS, ParseLimits
from .unit_split import dense_units

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    embedder: str = DEFAULT_EMBEDDER
    backend: str = "auto"  # how passages are embedded; resolved and recorded at build time
    words: int = 200
    overlap: int = 30
    faiss: str = "auto"
    sentence_words: int = 35  # also embed sentence groups this long (0: whole passages only)

    @property
    def chunk(self) -> ChunkConfig:
        return ChunkConfig(words=self.words, overlap=self.overlap)


@dataclass
class BuildReport:
    generation: str = ""
    documents: int = 0
    passages: int = 0
    added: int = 0
    unchanged: int = 0
    removed: int = 0
    embedded: int = 0
    not_found: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        rows = [("index generation", self.generation), ("documents in index", self.documents),
                ("passages in index", self.passages), ("documents added or changed", self.added),
                ("documents unchanged", self.unchanged), ("documents removed", self.removed),
                ("passages embedded", self.embedded), ("files/records skipped", len(self.skipped)),
                ("seconds", f"{self.seconds:.1f}")]
        lines = [f"{k:<28} {v}" for k, v in rows]
        reasons = Counter(_reason_kind(s.reason) for s in self.skipped)
        for reason, count in reasons.most_common():
            lines.append(f"  skipped: {reason:<40} {count}")
        for s in self.skipped[:20]:
            lines.append(f"    {s.path}: {s.reason}")
        if len(self.skipped) > 20:
            lines.append(f"    ... and {len(self.skipped) - 20} more")
        for name in self.not_found:
            lines.append(f"  not in the index: {name}")
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """'too large (123 bytes > 10)' -> 'too large': group skips by kind in the summary."""
    return reason.split(" (")[0].split(":")[0][:40]


def update_index(
    index: str | Path,
    *,
    add: Sequence[str | Path] = (),
    remove: Sequence[str] = (),
    rebuild: bool = False,
    config: IndexConfig | None = None,
    embedder: Embedder | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    progress: bool = True,
    limits: ParseLimits = DEFAULT_LIMITS,
    cancelled: Callable[[], bool] | None = None,
    worker_command: Sequence[str] | None = None,
) -> BuildReport:
    """Add new and changed documents from `add`, drop `remove` (ids or paths), publish.

    `rebuild` starts from an empty index instead of the live one (that is `index build`).
    Files are parsed under `limits` (limits.py; by default in a worker process, which
    `worker_command` starts instead of `python -m indexer.parse_worker`: tests start one
    that misbehaves on purpose), all of them within one parse budget (`limits.job_seconds`).
    When `cancelled` says yes (asked between files, while a file parses, and before
    publishing) the update raises Cancelled and the live generation stays as it was.
    """
    cancelled = cancelled or (lambda: False)
    began = time.perf_counter()
    layout = IndexDir(index)
    report = BuildReport()
    with layout.writer():
        previous = None if rebuild or not layout.exists() else layout.current()
        if previous is not None:
            stored = IndexConfig(**read_manifest(previous)["config"])
            if config is not None and config.backend == "auto":
                config = replace(config, backend=stored.backend)
            if config is not None and config != stored:
                raise ValueError(
                    f"the index was built with {stored}; rebuild it (`spanqa index build`) "
                    f"to change settings to {config}")
            config = stored
        config = config or IndexConfig()
        if embedder is None and config.backend == "auto":
            # What `auto` becomes depends on the model too (some cannot run on ONNX).
            embedder = Embedder(config.embedder, backend="auto")
        if embedder is not None:
            config = _matching(config, embedder)
        documents, passages, vectors, owners = _load_previous(previous)

        removed = _remove(documents, passages, remove, report)
        new_docs = _read_new(add, documents, max_file_bytes, report, progress, limits,
                             cancelled, worker_command)
        for doc in new_docs:
            if doc.id in documents:
                removed.add(doc.id)  # a changed document: its old passages go
        kept = [i for i, p in enumerate(passages) if p.document_id not in removed]
        report.removed = len(removed - {d.id for d in new_docs})
        report.added = len(new_docs)

        fresh: list[Passage] = []
        for doc in tqdm(new_docs, desc="chunk", unit="doc", disable=not progress):
            fresh += chunk_document(doc, config.chunk)
        # Kept passages keep their units' vectors, renumbered to their new rows.
        new_row = np.full(len(passages), -1, np.int64)
        new_row[kept] = np.arange(len(kept))
        keep_units = new_row[owners] >= 0
        pieces, owner_pieces = [vectors[keep_units]], [new_row[owners[keep_units]]]
        if fresh:
            embedder = embedder or Embedder(config.embedder, backend=config.backend)
            units, fresh_owners = dense_units(fresh, config.sentence_words)
            pieces.append(embedder.encode([searchable_text(t, x) for t, x in units],
                                          progress=progress))
            owner_pieces.append(fresh_owners + len(kept))
        report.embedded = len(fresh)
        all_passages = [passages[i] for i in kept] + fresh
        pieces = [v for v in pieces if v.size]
        all_vectors = np.concatenate(pieces) if pieces else np.zeros((0, 0), np.float32)
        all_owners = np.concatenate(owner_pieces)
        for doc_id in removed:
            documents.pop(doc_id, None)
        for doc in new_docs:
            documents[doc.id] = store.document_row(doc)

        _check(cancelled)
        generation = layout.new_generation()
        try:
            _write_generation(generation, documents, all_passages, all_vectors, all_owners,
                              config, progress)
            _check(cancelled)  # the last moment a cancel counts: after this it is published
        except BaseException:
            shutil.rmtree(generation, ignore_errors=True)
            raise
        layout.publish(generation)
        report.generation = generation.name
        report.documents, report.passages = len(documents), len(all_passages)
    report.seconds = time.perf_counter() - began
    return report


def _matching(config: IndexConfig, embedder: Embedder) -> IndexConfig:
    """The config with the given embedder's backend; refused if it names another model."""
    backend = getattr(embedder, "backend", "auto")
    if backend == "auto":  # an embedder that does not say: trust the caller
        return config if config.backend != "auto" else replace(config, backend="torch")
    if config.backend not in ("auto", backend):
        raise ValueError(f"the index embeds with the {config.backend} backend; the embedder "
                         f"given runs {backend}")
    name = getattr(embedder, "name", "")
    if name and resolve_embedder(config.embedder) != resolve_embedder(name):
        raise ValueError(f"the index embeds with {config.embedder}; the embedder given is "
                         f"{name}")
    return replace(config, backend=backend)


def _load_previous(previous: Path | None
                   ) -> tuple[dict[str, dict], list[Passage], np.ndarray, np.ndarray]:
    if previous is None:
        return {}, [], np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    db = store.open_db(previous)
    documents = {row["id"]: row for row in db["documents"].rows}
    passages = [store.to_passage(row) for row in store.iter_passage_rows(db)]
    vectors = np.load(previous / EMBEDDINGS, allow_pickle=False)
    db.conn.close()
    return documents, passages, vectors, load_units(previous, len(passages))


def _remove(documents: dict[str, dict], passages: list[Passage], names: Sequence[str],
            report: BuildReport) -> set[str]:
    """Document ids to drop: given by id, or by path (a file, or every file under a folder)."""
    removed: set[str] = set()
    for name in names:
        if name in documents:
            removed.add(name)
            continue
        target = str(Path(name).resolve())
        matches = {i for i, d in documents.items()
                   if d["path"] == target or d["path"].startswith(target.rstrip("/") + "/")}
        if matches:
            removed |= matches
        else:
            report.not_found.append(name)
    return removed


def _check(cancelled: Callable[[], bool]) -> None:
    if cancelled():
        raise Cancelled("cancelled before the new index generation was published")


def _read_new(paths: Sequence[str | Path], documents: dict[str, dict], max_file_bytes: int,
              report: BuildReport, progress: bool, limits: ParseLimits,
              cancelled: Callable[[], bool], worker_command: Sequence[str] | None
              ) -> list[Document]:
    """New and changed documents (by content hash); unchanged ones are only counted."""
    new: dict[str, Document] = {}
    bar = tqdm(desc="read", unit="doc", disable=not progress)
    with open_reader(limits, max_bytes=max_file_bytes, cancelled=cancelled,
                     command=worker_command) as read:
        for item in iter_documents(paths, max_bytes=max_file_bytes, read=read):
            _check(cancelled)  # between files (and records): nothing read so far is kept
            bar.update(1)
            if isinstance(item, Skipped):
                report.skipped.append(item)
            elif item.id in new:
                report.skipped.append(Skipped(item.path, f"duplicate document id {item.id}"))
            elif (item.id in documents
                  and documents[item.id]["content_hash"] == item.content_hash):
                report.unchanged += 1
            else:
                new[item.id] = item
    bar.close()
    return list(new.values())


def _write_generation(generation: Path, documents: dict[str, dict], passages: list[Passage],
                      vectors: np.ndarray, owners: np.ndarray, config: IndexConfig,
                      progress: bool) -> None:
    db = store.create(generation)
    with db.conn:
        store.insert_documents(db, documents.values())
        store.insert_passages(db, (store.passage_row(i, p) for i, p in enumerate(passages)))
    db.conn.close()
    tokens = [tokenize(searchable_text(p.title, p.text))
              for p in tqdm(passages, desc="bm25", unit="passage", disable=not progress)]
    if passages:
        BM25Index.build(tokens).save(generation / BM25_DIR)
    np.save(generation / UNITS, owners.astype(np.int64), allow_pickle=False)
    if vectors.size:
        np.save(generation / EMBEDDINGS, vectors, allow_pickle=False)
        save_faiss(build_faiss(vectors, config.faiss), generation / FAISS_FILE)
    else:
        np.save(generation / EMBEDDINGS, np.zeros((0, 0), np.float32), allow_pickle=False)
    manifest = {"config": asdict(config), "documents": len(documents), "passages": len(passages),
                "units": len(owners), "dim": int(vectors.shape[1]) if vectors.size else 0,
                "created": time.time()}
    (generation / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
