"""From start/end logits to answer spans with character offsets.

For each example, every window proposes its `n_best` best start and end tokens; valid
pairs (inside the context, start <= end, at most `max_answer_length` tokens) are scored
by start + end logit, which stays comparable across windows because no softmax is taken
per window. The null score of an example is the lowest [CLS] score over its windows, as
in the SQuAD 2.0 recipes of BERT and SpanBERT.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .features import Features, extend_over_combining


@dataclass
class Answer:
    """An answer span; crosses into the retriever pipeline and the API."""

    text: str
    start: int  # character offsets in the context: context[start:end] == text
    end: int
    score: float  # start logit + end logit
    probability: float = 0.0  # softmax over the example's candidates (and null)
    context_index: int = 0


@dataclass
class Prediction:
    """All candidates for one example, best first, with its null score."""

    answers: list[Answer] = field(default_factory=list)
    null_score: float = float("inf")

    @property
    def best(self) -> Answer | None:
        return self.answers[0] if self.answers else None

    def in_context(self, index: int) -> Prediction:
        """A copy whose answers say they were read in context `index` (records are not
        changed once made: a caller may still hold these)."""
        return replace(self, answers=[replace(a, context_index=index) for a in self.answers])

    @property
    def null_odds(self) -> float:
        """Null score minus best span score: the official `na_prob` input for v2.0 scoring."""
        if self.best is None:
            return float("inf") if self.null_score == float("inf") else 1e9
        return self.null_score - self.best.score

    def text(self, threshold: float | None) -> str:
        """The answer text, or "" when a null threshold is set and the span falls short of it.

        An answer needs best score - null score >= threshold, which is the official v2.0
        script's rule (no answer when na_prob > thresh) with threshold = -thresh.
        """
        if self.best is None:
            return ""
        if threshold is not None and self.best.score - self.null_score < threshold:
            return ""
        return self.best.text


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def _best_pairs(starts: np.ndarray, ends: np.ndarray, offsets: Sequence[tuple | None],
                n_best: int, max_answer_length: int) -> Iterator[tuple[int, int, float]]:
    """(start token, end token, start + end logit) for the valid pairs among the window's
    `n_best` best starts and ends, best first.

    Why numpy: scoring the n_best x n_best pairs one by one in Python took more time than
    reading a short window.
    """
    length = len(offsets)
    in_context = np.fromiter((o is not None for o in offsets), bool, length)
    top_starts = np.argsort(starts[:length])[::-1][:n_best]
    top_ends = np.argsort(ends[:length])[::-1][:n_best]
    top_starts, top_ends = top_starts[in_context[top_starts]], top_ends[in_context[top_ends]]
    s, e = top_starts[:, None], top_ends[None, :]
    valid = (e >= s) & (e - s + 1 <= max_answer_length)
    scores = starts[top_starts][:, None] + ends[top_ends][None, :]
    rows, cols = np.nonzero(valid)
    picked = scores[rows, cols]
    for i in np.argsort(-picked, kind="stable"):  # lazily: the caller stops at n_best spans
        yield int(top_starts[rows[i]]), int(top_ends[cols[i]]), float(picked[i])


def postprocess(
    features: Features,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    contexts: Sequence[str],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    with_null: bool = False,
) -> list[Prediction]:
    """One Prediction per context/example, in the order of `contexts`.

    `with_null` includes the null score in the probability normalisation (SQuAD 2.0
    models), so that a span's probability is lowered when the model prefers no answer.
    """
    candidates: list[dict[tuple[int, int], Answer]] = [{} for _ in contexts]
    null_scores = np.full(len(contexts), np.inf)
    for f, example in enumerate(features.example_index):
        starts, ends = start_logits[f], end_logits[f]
        offsets = features.offsets[f]
        null_scores[example] = min(null_scores[example], float(starts[0] + ends[0]))
        found = candidates[example]
        context = contexts[example]
        # A window's spans below its own n_best best can never make the example's n_best.
        here: set[tuple[int, int]] = set()
        for s, e, score in _best_pairs(starts, ends, offsets, n_best, max_answer_length):
            char_start = offsets[s][0]
            char_end = extend_over_combining(context, offsets[e][1])
            key = (char_start, char_end)
            here.add(key)
            # Overlapping windows propose the same span: keep its best score.
            if key not in found or found[key].score < score:
                found[key] = Answer(text=context[char_start:char_end], start=char_start,
                                    end=char_end, score=score, context_index=example)
            if len(here) == n_best:
                break
    predictions = []
    for example, found in enumerate(candidates):
        answers = sorted(found.values(), key=lambda a: a.score, reverse=True)[:n_best]
        null = float(null_scores[example])
        if answers:
            scores = np.array([a.score for a in answers] + ([null] if with_null else []))
            for answer, p in zip(answers, _softmax(scores), strict=False):
                answer.probability = float(p)
        predictions.append(Prediction(answers=answers, null_score=null))
    return predictions
