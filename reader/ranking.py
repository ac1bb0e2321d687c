"""Ranking a question's spans across the passages read for it: the one ordering the
reader's own API, the question-answering pipeline and the calibration fit all use.

Why one function: the calibration is fitted on the order it sees, so the order the
pipeline answers in must be the very same (best score first; equal scores keep passage
order, then the reader's order within a passage).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, TypeVar

from .postprocess import Answer, Prediction

S = TypeVar("S")


class Span(NamedTuple):
    """A span the reader proposed for a question, with what ranking needs of it."""

    score: float  # start + end logit
    margin: float  # score minus its passage's null ([CLS]) score
    passage: int  # 1-based rank of its passage among those read
    answer: Answer


def spans(predictions: Sequence[Prediction]) -> list[Span]:
    """Every span of one question's predictions (one per passage), in passage order."""
    return [Span(a.score, a.score - p.null_score, rank, a)
            for rank, p in enumerate(predictions, 1) for a in p.answers]


def rank(candidates: Iterable[S], score: Callable[[S], float]) -> list[tuple[float, S]]:
    """(score, candidate) pairs, best score first; ties keep the candidates' order."""
    return sorted(((score(c), c) for c in candidates), key=lambda pair: -pair[0])
