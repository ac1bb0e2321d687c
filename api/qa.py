"""Question answering over an index: retrieve passages, read them, rank spans across them.

    qa = QA("data/index", "data/readers/demo")
    result = qa.ask("Who founded the company?")

Spans are ranked by raw start+end logits, which stay comparable across passages (no
softmax per passage), optionally nudged by the passage's retrieval rank; a calibration
fitted on dev data turns the score into a confidence, and below its threshold SpanQA
abstains and hands the question to a person.

Reading is the cost (the encoder runs once per passage), so with a fitted calibration
SpanQA reads adaptively: the top `first_read` passages first, and the rest of the
retrieved ones only when no answer in those is confident enough (`early_stop`); calibration
chooses both on dev data (the pair that reads fewest passages without losing accuracy).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..reader.metrics import normalize_answer
from ..reader.postprocess import Answer, Prediction
from ..reader.ranking import rank, spans
from ..reader.reader import Reader
from ..retriever.search import MODES, Filters, Hit, Retriever
from ..runtime.embedder import Embedder
from .calibration import Calibration

CONTEXT_CHARS = 150  # characters shown on each side of an answer


@dataclass
class Context:
    """A window of the passage around the answer; `marked` shows it between ** marks."""

    text: str
    answer_start: int  # offsets of the answer within `text`
    answer_end: int
    marked: str


@dataclass
class SpanAnswer:
    """One ranked answer with everything needed to show and cite its source."""

    text: str
    confidence: float
    score: float  # the ranking score: start+end logit (+ retrieval term when fused)
    passage_id: str
    document_id: str
    title: str
    path: str
    page: int | None
    start: int  # character offsets in the passage text
    end: int
    document_start: int  # character offsets in the source document's text
    document_end: int
    context: Context
    passage_rank: int  # 1-based rank of its passage in the retrieved list
    occurrences: int = 1  # passages that proposed the same (normalised) answer


@dataclass
class AskResult:
    question: str
    answers: list[SpanAnswer]
    handoff: bool  # True: no answer was confident enough; pass the question to a person
    passages: list[Hit]
    timing_ms: dict[str, float] = field(default_factory=dict)
    calibrated: bool = False
    passages_read: int = 0
    # With handoff: the best span found, below the threshold. Not an answer; a lead for the
    # person the question is handed to (and what a demo with a weak reader can show).
    best_guess: SpanAnswer | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Candidate(NamedTuple):
    """One span the reader proposed, before duplicates across passages are merged."""

    score: float  # the ranking score (fused with the retrieval rank when calibrated so)
    margin: float  # reader score minus its passage's null score
    hit: Hit
    rank: int  # 1-based rank of its passage
    answer: Answer


class Merged(NamedTuple):
    """One answer text, merged across the passages that proposed it."""

    confidence: float
    best: Candidate  # its best-scored occurrence
    occurrences: int  # passages that proposed it


@dataclass(frozen=True)
class AskRequest:
    question: str
    top_k: int = 3
    retrieval_k: int | None = None
    filters: Filters | None = None
    mode: str | None = None


@dataclass
class Retrieved:
    """A question with its passages, between the retrieval and the reading stage."""

    request: AskRequest
    hits: list[Hit]
    retrieve_ms: float  # how long retrieving took (for a batch: the whole batch)


class QA:
    """The pipeline behind `spanqa ask`, the HTTP API and the web page.

    `reload()` swaps in the index's newest generation; a question already being answered
    keeps the retriever it started with, so it never sees a mix of two generations.
    """

    def __init__(self, index: str | Path | Retriever, reader: str | Path | Reader, *,
                 calibration: Calibration | None = None, retrieval_k: int = 20,
                 mode: str = "hybrid", max_passages_shown: int = 5,
                 first_read: int | None = None,
                 adaptive: bool = True, reader_backend: str = "auto"):
        if first_read is not None and first_read < 1:
            raise ValueError(f"first_read must be at least 1, got {first_read}")
        self.index = index.generation.parent if isinstance(index, Retriever) else Path(index)
        self.retriever = index if isinstance(index, Retriever) else Retriever(index)
        if isinstance(reader, Reader):
            self.reader = reader
            self.calibration = calibration or Calibration()
        else:
            self.reader = Reader.from_pretrained(reader, backend=reader_backend,
                                                 keep_model=False)
            self.calibration = calibration or Calibration.load(reader)
        self.retrieval_k, self.mode = retrieval_k, mode
        self.max_passages_shown = max_passages_shown
        self.first_read, self.adaptive = first_read, adaptive
        self._reload_lock = threading.Lock()

    def reload(self) -> bool:
        """Open the index's current generation if it changed; True when it did."""
        with self._reload_lock:
            current = self.retriever
            embedder = current.loaded_embedder
            fresh = Retriever(self.index, embedder=embedder, fusion=current.fusion,
                              candidates=current.candidates)
            if fresh.generation == current.generation:
                return False
            if embedder is not None and not fresh.matches(embedder):
                # Rebuilt with another embedding model or backend: questions must follow.
                replacement = Embedder(fresh.embedder_name, backend=fresh.embedder_backend)
                if hasattr(embedder, "swap"):
                    embedder.swap(replacement)  # shared with the upload jobs: they follow too
                else:
                    fresh.use_embedder(replacement)
            self.retriever = fresh
            return True

    def ask(self, question: str, top_k: int = 3, *, retrieval_k: int | None = None,
            filters: Filters | None = None, mode: str | None = None) -> AskResult:
        return self.ask_many([AskRequest(question, top_k, retrieval_k, filters, mode)])[0]

    def ask_many(self, requests: Sequence[AskRequest]) -> list[AskResult]:
        """Several questions with one reader pass over all their passages (micro-batching)."""
        return self.read(self.retrieve(requests))

    def retrieve(self, requests: Sequence[AskRequest]) -> list[Retrieved]:
        """The first stage of answering: each question's passages, from one index generation.

        The server runs it as each question arrives, apart from the reader, so that while
        a micro-batch fills up its questions are already being retrieved.
        """
        began = time.perf_counter()
        retriever = self.retriever  # pinned: one generation for the whole batch
        for r in requests:
            if not r.question.strip():
                raise ValueError("the question is empty")
            if r.top_k < 1:
                raise ValueError("top_k must be at least 1")
            if (r.mode or self.mode) not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}, got {r.mode!r}")
        dense = [i for i, r in enumerate(requests)
                 if (r.mode or self.mode) != "bm25" and retriever.passages]
        queries = dict(zip(dense, retriever.embed_questions(
            [requests[i].question for i in dense]) if dense else [], strict=True))
        hits = [retriever.search(r.question, r.retrieval_k or self.retrieval_k,
                                 mode=r.mode or self.mode, filters=r.filters,
                                 query=queries.get(i))
                for i, r in enumerate(requests)]
        ms = round((time.perf_counter() - began) * 1000, 2)
        return [Retrieved(r, hs, ms) for r, hs in zip(requests, hits, strict=True)]

    def read(self, retrieved: Sequence[Retrieved]) -> list[AskResult]:
        """The second stage: one reader pass over the passages of all these questions, then
        each question's answers ranked across its passages."""
        began = time.perf_counter()
        hits = [r.hits for r in retrieved]
        predictions = self.predict([r.request.question for r in retrieved], hits,
                                   adaptive=self.adaptive)
        read_ms = round((time.perf_counter() - began) * 1000, 2)
        results = []
        for r, hs, preds in zip(retrieved, hits, predictions, strict=True):
            confident, best_guess = self._answers(hs[: len(preds)], preds, r.request.top_k)
            read_and_rank = (time.perf_counter() - began) * 1000
            results.append(AskResult(
                question=r.request.question, answers=confident, handoff=not confident,
                passages=hs[: self.max_passages_shown], calibrated=self.calibration.fitted,
                passages_read=len(preds), best_guess=best_guess,
                timing_ms={"retrieve": r.retrieve_ms, "read": read_ms,
                           "total": round(r.retrieve_ms + read_and_rank, 2),
                           "batch_size": len(retrieved)}))
        return results

    def retrieve_and_read(self, requests: Sequence[AskRequest], *, adaptive: bool = False
                          ) -> tuple[list[list[Hit]], list[list[Prediction]]]:
        """Retrieved passages and the reader's raw predictions for them, per request."""
        hits = [r.hits for r in self.retrieve(requests)]
        return hits, self.predict([r.question for r in requests], hits, adaptive=adaptive)

    def predict(self, questions: Sequence[str], hits: Sequence[Sequence[Hit]], *,
                adaptive: bool = False) -> list[list[Prediction]]:
        """The reader's raw predictions for each question's passages.

        With `adaptive`, a question's predictions cover only its first `first_read` passages
        when an answer there is already confident; otherwise every retrieved passage.
        """
        first = ((self.first_read or self.calibration.first_read)
                 if adaptive and self.calibration.fitted else None)
        predictions = self.reader.predict(questions, [[h.text for h in hs[:first]] for hs in hits])
        if first is not None:
            unsure = [i for i, (hs, preds) in enumerate(zip(hits, predictions, strict=True))
                      if len(hs) > first and not self._sure(hs, preds)]
            rest = self.reader.predict([questions[i] for i in unsure],
                                       [[h.text for h in hits[i][first:]] for i in unsure])
            for i, more in zip(unsure, rest, strict=True):
                predictions[i] = predictions[i] + [p.in_context(first + ci)
                                                   for ci, p in enumerate(more)]
        return predictions

    def _sure(self, hits: Sequence[Hit], predictions: Sequence[Prediction]) -> bool:
        """Whether the best span read so far is confident enough to stop reading."""
        found = self.candidates(hits[: len(predictions)], predictions)
        if not found:
            return False
        _, best = rank(found, score=lambda c: c.score)[0]
        return self.calibration.confidence(best.score, best.margin) >= self.calibration.early_stop

    def candidates(self, hits: Sequence[Hit], predictions: Sequence[Prediction]
                   ) -> list[Candidate]:
        """Every span the reader proposed, unmerged."""
        fused = self.calibration.fused_score
        return [Candidate(fused(s.score, s.passage), s.margin, hits[s.passage - 1], s.passage,
                          s.answer) for s in spans(predictions)]

    def _answers(self, hits: Sequence[Hit], predictions: Sequence[Prediction], top_k: int
                 ) -> tuple[list[SpanAnswer], SpanAnswer | None]:
        """(the best `top_k` answers that clear the threshold, None), or ([], the best guess).

        The rule the threshold was tuned with: the best-scored answer decides whether to
        answer at all; then every answer that clears the threshold is shown. Only the
        answers returned are built in full (their context windows cost more than ranking).
        """
        ranked = self._merged(hits, predictions)
        threshold = self.calibration.threshold
        if not ranked:
            return [], None
        if ranked[0].confidence < threshold:
            return [], self._answer(*ranked[0])
        shown = (entry for entry in ranked if entry.confidence >= threshold)
        return [self._answer(*entry) for entry in itertools.islice(shown, top_k)], None

    def _merged(self, hits: Sequence[Hit], predictions: Sequence[Prediction]
                ) -> list[Merged]:
        """One entry per normalised answer text, best score first (overlapping passages
        repeat spans)."""
        merged: dict[str, tuple[Candidate, set[str]]] = {}
        for _, c in rank(self.candidates(hits, predictions), score=lambda c: c.score):
            key = normalize_answer(c.answer.text) or c.answer.text
            if key in merged:
                merged[key][1].add(c.hit.passage_id)
            else:
                merged[key] = (c, {c.hit.passage_id})
        return [Merged(round(self.calibration.confidence(c.score, c.margin), 4), c, len(passages))
                for c, passages in merged.values()]

    def _answer(self, confidence: float, candidate: Candidate, occurrences: int) -> SpanAnswer:
        score, _, hit, rank, a = candidate
        return SpanAnswer(
            text=a.text, confidence=confidence, score=round(score, 4),
            passage_id=hit.passage_id, document_id=hit.document_id, title=hit.title,
            path=hit.path, page=hit.page, start=a.start, end=a.end,
            document_start=hit.start + a.start, document_end=hit.start + a.end,
            context=context_window(hit.text, a.start, a.end), passage_rank=rank,
            occurrences=occurrences)


def context_window(text: str, start: int, end: int, chars: int = CONTEXT_CHARS) -> Context:
    """Up to `chars` characters each side of the answer, cut at spaces, with … at cuts."""
    left = max(0, start - chars)
    if left > 0 and " " in text[left:start]:
        left = text.index(" ", left, start) + 1
    right = min(len(text), end + chars)
    if right < len(text) and " " in text[end:right]:
        right = text.rindex(" ", end, right)
    prefix = "…" if left > 0 else ""
    suffix = "…" if right < len(text) else ""
    window = prefix + text[left:right] + suffix
    a_start = len(prefix) + start - left
    a_end = a_start + end - start
    marked = window[:a_start] + "**" + window[a_start:a_end] + "**" + window[a_end:]
    return Context(text=window, answer_start=a_start, answer_end=a_end, marked=marked)
