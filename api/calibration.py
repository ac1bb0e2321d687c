"""From raw span scores to confidences a person (or a bot) can act on.

A reader's start+end logits are comparable across passages but mean nothing on their own.
Platt scaling maps them to the probability that the answer is right, fitted on dev
questions asked over an index; the abstention threshold is then chosen on the same data.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.atomic import write_json_atomic

CALIBRATION_FILE = "calibration.json"


@dataclass
class Calibration:
    """confidence = sigmoid(score_weight * score + margin_weight * margin + bias), where
    score is the span's start+end logit plus `retriever_weight` * -log(passage rank) and
    margin is score minus its passage's null ([CLS]) score."""

    score_weight: float = 0.25
    margin_weight: float = 0.0
    bias: float = -2.5
    retriever_weight: float = 0.0
    threshold: float = 0.2  # abstain below this confidence
    early_stop: float = 0.5  # adaptive reading stops once an answer is this confident
    first_read: int = 5  # ... among the top `first_read` passages, read before the rest
    fitted: bool = False  # False: the defaults above, not fitted on any data
    ece: float | None = None  # expected calibration error on the data it was fitted on
    ece_before: float | None = None  # ... with the uncalibrated defaults
    fitted_on: str = ""

    def fused_score(self, reader_score: float, passage_rank: int) -> float:
        """The reader's start+end logit, nudged toward passages the retriever ranked high."""
        return reader_score - self.retriever_weight * math.log(passage_rank)

    def confidence(self, score: float, margin: float) -> float:
        return float(sigmoid(self.score_weight * score + self.margin_weight * margin
                             + self.bias))

    def save(self, folder: str | Path) -> Path:
        """Atomic: a reader never sees a half-written calibration."""
        return write_json_atomic(Path(folder) / CALIBRATION_FILE, asdict(self))

    @classmethod
    def load(cls, folder: str | Path) -> Calibration:
        """The calibration stored beside a reader, or the defaults when there is none."""
        folder = Path(folder)
        for candidate in (folder / CALIBRATION_FILE, folder.parent / CALIBRATION_FILE,
                          folder / "best" / CALIBRATION_FILE):
            if candidate.is_file():
                known = cls.__dataclass_fields__
                data = json.loads(candidate.read_text())
                return cls(**{k: v for k, v in data.items() if k in known})
        return cls()


def sigmoid(z: float | np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))


def fit_platt(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 100) -> np.ndarray:
    """Logistic regression by Newton's method: weights for the columns of x, then the bias.

    Platt's target smoothing (N+ + 1)/(N+ + 2) keeps the fit finite when the data separate.
    """
    x = np.column_stack([np.asarray(x, dtype=float), np.ones(len(x))])
    y = np.asarray(y, dtype=float)
    positives, negatives = y.sum(), len(y) - y.sum()
    target = np.where(y > 0.5, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = sigmoid(x @ w)
        grad = x.T @ (p - target) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10
                               ) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    if len(confidence) == 0:
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            error += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(error)


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, answerable: np.ndarray
                     ) -> float | None:
    """The threshold that answers the most questions right while answering wrongly less
    often than it abstains on unanswerable questions (a wrong answer is worse than none);
    among equals, the one with the fewest wrong answers.

    Falls back to the threshold with the fewest wrong answers per abstention when no
    threshold meets the rule, and gives None when there are no unanswerable questions to
    tune on (SQuAD 1.1): the rule needs them.
    """
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, bool)
    answerable = np.asarray(answerable, bool)
    if answerable.all():
        return None
    best, best_key = 1.0, None
    for t in np.unique(np.concatenate([confidence, [0.0, 1.0]])):
        answered = confidence >= t
        wrong = int((answered & ~correct).sum())
        abstained_unanswerable = int((~answered & ~answerable).sum())
        right = int((answered & correct).sum())
        meets = wrong < abstained_unanswerable
        key = ((True, right, -wrong) if meets
               else (False, -wrong / max(abstained_unanswerable, 1), right))
        if best_key is None or key > best_key:
            best, best_key = float(t), key
    return best
