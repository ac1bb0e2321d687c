"""Top-k passages for a question: BM25, dense, or both fused (by score or by rank).

A `Retriever` pins one index generation when it opens, so every query it answers sees one
consistent set of SQLite rows, BM25 weights and vectors, whatever a writer does meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..index import store
from ..index.bm25 import BM25Index
from ..index.dense import load_faiss
from ..index.files import BM25_DIR, EMBEDDINGS, FAISS_FILE, load_units, read_manifest
from ..index.layout import IndexDir
from ..index.text import searchable_text, tokenize
from ..index.units import best_per_passage, unit_bounds
from ..runtime.embedder import Embedder, resolve_embedder

MODES = ("bm25", "dense", "hybrid")


@dataclass
class Hit:
    """A retrieved passage; crosses into the reader pipeline and the API."""

    passage_id: str
    document_id: str
    title: str
    path: str
    page: int | None
    order: int
    start: int  # character offsets of the passage in its document's text
    end: int
    text: str
    score: float
    bm25_rank: int | None = None  # 1-based rank each retriever gave it (None: not in its list)
    dense_rank: int | None = None


@dataclass(frozen=True)
class Filters:
    """Document metadata filters; all given ones must hold."""

    path_prefix: str | None = None
    title: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.path_prefix or self.title or self.tags)


@dataclass(frozen=True)
class Fusion:
    """How hybrid mode joins the BM25 and dense lists.

    `convex` (the default) adds the two scores: BM25 divided by the question's best BM25
    score, so it lies in [0, 1] like a cosine, weighted by `bm25_share`, plus the cosine
    weighted by the rest. Unlike rank fusion it keeps how far apart the candidates are, so a
    passage that one retriever puts far ahead stays ahead: on SQuAD its recall@1 beats both
    retrievers alone, which reciprocal rank fusion (`rrf`, with `rrf_k` and the two
    weights) does not. bench/retrieval.py tunes both on the train questions.
    """

    method: str = "convex"
    bm25_share: float = 0.25  # chosen on the SQuAD train questions (bench/retrieval.py --tune)
    rrf_k: int = 60
    bm25_weight: float = 1.0
    dense_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.method!r}")
        if not 0.0 <= self.bm25_share <= 1.0:
            raise ValueError(f"bm25_share must lie in [0, 1], got {self.bm25_share}")
        if self.rrf_k < 0:
            raise ValueError(f"rrf_k must be >= 0, got {self.rrf_k}")


FUSIONS = ("convex", "rrf")


def convex_fuse(bm25: np.ndarray, cosine: np.ndarray, rows: np.ndarray, share: float
                ) -> list[tuple[int, float]]:
    """share * bm25 / max(bm25) + (1 - share) * cosine for each candidate row, best first
    (ties: lower row). `bm25` and `cosine` hold the scores of `rows`."""
    bm25 = np.maximum(bm25, 0.0)  # rank-bm25's idf floor can go below 0 in tiny indexes
    top = float(bm25.max()) if bm25.size else 0.0
    fused = share * (bm25 / top if top > 0 else bm25) + (1.0 - share) * cosine
    order = np.lexsort((rows, -fused))
    return [(int(rows[i]), float(fused[i])) for i in order]


def rrf_fuse(lists: dict[str, list[tuple[int, float]]], weights: dict[str, float], k: int
             ) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion: sum of weight / (k + rank) over the lists.

    Ranks, not scores, are fused because BM25 and cosine scores live on unrelated scales.
    """
    fused: dict[int, float] = {}
    for name, hits in lists.items():
        for rank, (row, _) in enumerate(hits, 1):
            fused[row] = fused.get(row, 0.0) + weights[name] / (k + rank)
    return sorted(fused.items(), key=lambda x: (-x[1], x[0]))


class Retriever:
    def __init__(self, index: str | Path, *, embedder: Embedder | None = None,
                 fusion: Fusion | None = None, candidates: int = 100):
        self.generation = IndexDir(index).current()
        self.manifest = read_manifest(self.generation)
        self.passages = self.manifest["passages"]
        self.embedder_name = self.manifest["config"]["embedder"]
        self.embedder_backend = self.manifest["config"]["backend"]
        self._embedder = embedder
        self.fusion, self.candidates = fusion or Fusion(), candidates
        self.db = store.open_db(self.generation)
        self._guard_tags = False  # set once a tag filter meets metadata SQLite cannot read
        self.bm25 = BM25Index.load(self.generation / BM25_DIR) if self.passages else None
        self.faiss = load_faiss(self.generation / FAISS_FILE) if self.passages else None
        self.on_gpu = self.faiss is not None and "Gpu" in type(self.faiss).__name__
        self.vectors = np.load(self.generation / EMBEDDINGS, mmap_mode="r", allow_pickle=False)
        self.owners = load_units(self.generation, self.passages)  # passage row of each vector
        self.bounds = unit_bounds(self.owners, self.passages)
        self.most_units = int(np.diff(self.bounds).max()) if self.passages else 1

    def matches(self, embedder) -> bool:
        """Whether `embedder` embeds questions the way this index embedded its passages."""
        backend = getattr(embedder, "backend", "auto")
        name = getattr(embedder, "name", "")
        return backend in ("auto", self.embedder_backend) and (
            not name or resolve_embedder(name) == resolve_embedder(self.embedder_name))

    @property
    def loaded_embedder(self) -> Embedder | None:
        """The question embedder if one is loaded or was given (None: not loaded yet)."""
        return self._embedder

    def use_embedder(self, embedder: Embedder) -> None:
        """Embed questions with `embedder` from now on (the server shares one between
        questions and upload jobs, so that a swap reaches both)."""
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        """The question embedder, loaded on first use."""
        if self._embedder is None:
            self._embedder = Embedder(self.embedder_name, backend=self.embedder_backend)
        return self._embedder

    def search(self, question: str, top_k: int = 10, mode: str = "hybrid",
               filters: Filters | None = None, *, query: np.ndarray | None = None) -> list[Hit]:
        """Top-k passages; `query`: the question's embedding when the caller already has it
        (`embed_questions` embeds a batch of questions in one pass)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not question.strip():
            raise ValueError("the question is empty")
        if not self.passages or top_k <= 0:
            return []
        allowed = self._allowed(filters) if filters else None
        if allowed is not None and not allowed.any():
            return []
        depth = max(self.candidates, top_k)
        lists: dict[str, list[tuple[int, float]]] = {}
        if mode in ("bm25", "hybrid"):
            bm25 = self.bm25.scores(tokenize(question))
            lists["bm25"] = self.bm25.top_k_of(bm25, depth, allowed)
        if mode in ("dense", "hybrid"):
            if query is None:
                query = self.embed_questions([question])[0]
            lists["dense"] = self.dense_top_k(question, depth, allowed, query=query)
        ranks = {name: {row: r for r, (row, _) in enumerate(hits, 1)}
                 for name, hits in lists.items()}
        if mode == "hybrid" and self.fusion.method == "convex":
            rows = np.array(sorted({row for hits in lists.values() for row, _ in hits}), np.int64)
            cosine = self.dense_scores(rows, query)
            best = convex_fuse(bm25[rows], cosine, rows, self.fusion.bm25_share)[:top_k]
        elif mode == "hybrid":
            f = self.fusion
            best = rrf_fuse(lists, {"bm25": f.bm25_weight, "dense": f.dense_weight},
                            f.rrf_k)[:top_k]
        else:
            best = lists[mode][:top_k]
        rows = store.passages_by_rows(self.db, [row for row, _ in best])
        return [self._hit(rows[row], score, ranks) for row, score in best]

    def bm25_top_k(self, question: str, depth: int, allowed: np.ndarray | None = None
                   ) -> list[tuple[int, float]]:
        """(passage row, score) pairs, best first."""
        return self.bm25.top_k(tokenize(question), depth, allowed=allowed)

    def embed_questions(self, questions: Sequence[str]) -> np.ndarray:
        """Query embeddings, one row per question, each independent of the others asked
        with it (see `Embedder.encode_queries`)."""
        encode = getattr(self.embedder, "encode_queries", self.embedder.encode)
        return encode([searchable_text("", q) for q in questions])

    def dense_top_k(self, question: str, depth: int, allowed: np.ndarray | None = None,
                    *, query: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(passage row, cosine of its best unit) pairs, best first."""
        query = self.embed_questions([question]) if query is None else query.reshape(1, -1)
        units = len(self.owners)
        if allowed is None:
            # Enough units to hold `depth` passages even if each before them matched with
            # all its units (exact search; GPU indexes return at most 2,048).
            k = min(units, (depth - 1) * self.most_units + 1, 2048 if self.on_gpu else units)
            scores, ids = self.faiss.search(query, k)
            valid = ids[0] >= 0
            rows, best = self.owners[ids[0][valid]], scores[0][valid]  # best unit first
            first = np.sort(np.unique(rows, return_index=True)[1])[:depth]  # its passage's best
            return [(int(r), float(b)) for r, b in zip(rows[first], best[first], strict=True)]
        unit_ids = np.flatnonzero(allowed[self.owners])  # filtered: exact, over allowed rows
        best = best_per_passage(np.asarray(self.vectors[unit_ids]) @ query[0],
                                self.owners[unit_ids], self.passages)
        rows = np.flatnonzero(allowed)
        order = np.argsort(-best[rows], kind="stable")[:depth]
        return [(int(rows[i]), float(best[rows[i]])) for i in order]

    def dense_scores(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """The cosine of each passage row's best unit with the question."""
        if not len(rows):
            return np.zeros(0, np.float32)
        starts, counts = self.bounds[rows], self.bounds[rows + 1] - self.bounds[rows]
        offsets = np.cumsum(counts) - counts  # where each row's units begin in unit_ids
        unit_ids = np.repeat(starts - offsets, counts) + np.arange(counts.sum())
        scores = np.asarray(self.vectors[unit_ids], np.float32) @ query.reshape(-1)
        return np.maximum.reduceat(scores, offsets)

    def _allowed(self, filters: Filters) -> np.ndarray:
        """A boolean mask over passage rows from document metadata.

        Metadata is strict JSON on the way in, and `index verify` reports rows that are not
        (written by an older SpanQA, or edited by hand), so tag filters read it as it is:
        checking every row with json_valid, per tag, would cost every filtered search. A
        row SQLite cannot read makes json_each fail the query; then this generation (which
        never changes under this Retriever) is searched from then on with the check, such
        rows matching no tag, instead of every filtered search failing."""
        try:
            rows = self._filtered_rows(filters, self._guard_tags)
        except sqlite3.OperationalError:
            if self._guard_tags or not filters.tags:
                raise
            self._guard_tags = True
            rows = self._filtered_rows(filters, True)
        mask = np.zeros(self.passages, dtype=bool)
        mask[rows] = True
        return mask

    def _filtered_rows(self, filters: Filters, guard_tags: bool) -> list[int]:
        where, args = [], []
        if filters.path_prefix:
            where.append("d.path like ? escape '\\'")
            prefix = str(_expand(filters.path_prefix))
            args.append(prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if filters.title:
            where.append("d.title = ?")
            args.append(filters.title)
        metadata = ("case when json_valid(d.metadata) then d.metadata else '{}' end"
                    if guard_tags else "d.metadata")
        for tag in filters.tags:
            where.append(f"exists (select 1 from json_each({metadata}, '$.tags') t "
                         "where t.value = ?)")
            args.append(tag)
        sql = ("select p.row from passages p join documents d on d.id = p.document_id where "
               + " and ".join(where))
        return [r["row"] for r in self.db.query(sql, args)]

    def _hit(self, row: dict, score: float, ranks: dict[str, dict[int, int]]) -> Hit:
        return Hit(
            passage_id=row["id"], document_id=row["document_id"], title=row["title"],
            path=row["path"], page=row["page"], order=row["ord"], start=row["start"],
            end=row["end"], text=row["text"], score=score,
            bm25_rank=ranks.get("bm25", {}).get(row["row"]),
            dense_rank=ranks.get("dense", {}).get(row["row"]),
        )

    def stats(self) -> dict:
        return {"generation": self.generation.name, **self.manifest,
                "faiss": type(self.faiss).__name__ if self.faiss else None}


def hits_json(hits: list[Hit]) -> str:
    from dataclasses import asdict

    return json.dumps([asdict(h) for h in hits], ensure_ascii=False, indent=2, allow_nan=False)


def _expand(path: str) -> Path:
    """`~/docs` as the shell would expand it; an unknown `~user` stays literal (no error)."""
    try:
        return Path(path).expanduser().resolve()
    except RuntimeError:
        return Path(path).resolve()
