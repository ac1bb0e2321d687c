"""Fit a reader's confidence calibration on dev questions asked over an index.

The questions are asked open-domain (without their paragraph), exactly as users ask them,
so the confidence reflects retrieval misses as well as reading errors. Unanswerable
questions (SQuAD 2.0) count every answer as wrong; they are what the abstention
threshold is tuned on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..reader.metrics import exact_match
from ..reader.ranking import rank, spans
from ..reader.squad import SquadExample
from .calibration import (
    Calibration,
    choose_threshold,
    expected_calibration_error,
    fit_platt,
    sigmoid,
)
from .qa import QA, AskRequest

RETRIEVER_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
EARLY_STOP_LEVELS = tuple(round(x, 2) for x in np.arange(0.0, 1.0, 0.05))
EARLY_STOP_TOLERANCE = 0.005  # top-1 accuracy adaptive reading may give up for its speed
FIRST_READS = (1, 2, 3, 5)  # how many passages adaptive reading may read before deciding


@dataclass
class Observed:
    """A question's candidate spans: (reader score, margin, passage rank, text)."""

    candidates: list[tuple[float, float, int, str]]
    golds: list[str]
    passages: int = 0  # passages retrieved and read

    @property
    def answerable(self) -> bool:
        return bool(self.golds)

    def top(self, retriever_weight: float, depth: int | None = None
            ) -> tuple[float, float, str] | None:
        """(fused score, margin, text) of the span QA would rank first with this weight,
        reading the first `depth` passages (all of them by default)."""
        found = [c for c in self.candidates if depth is None or c[2] <= depth]
        if not found:
            return None
        fuse = Calibration(retriever_weight=retriever_weight).fused_score
        fused, (_, margin, _, text) = rank(found, score=lambda c: fuse(c[0], c[2]))[0]
        return fused, margin, text

    def correct(self, text: str) -> bool:
        return any(exact_match(text, g) for g in self.golds)


def observe(qa: QA, examples: list[SquadExample], batch_size: int = 8,
            progress: bool = True) -> list[Observed]:
    out = []
    bar = tqdm(total=len(examples), desc="asking", unit="q", disable=not progress)
    for i in range(0, len(examples), batch_size):
        batch = examples[i: i + batch_size]
        _, predictions = qa.retrieve_and_read([AskRequest(e.question) for e in batch])
        for example, preds in zip(batch, predictions, strict=True):
            # Every passage's spans: which one ranks first depends on the retriever weight.
            found = [(s.score, s.margin, s.passage, s.answer.text) for s in spans(preds)]
            out.append(Observed(found, [a.text for a in example.answers], len(preds)))
        bar.update(len(batch))
    bar.close()
    return out


def _features(observed: list[Observed], w: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per question: (score, margin) of the top span, whether it is right, answerable."""
    x, y = [], []
    for o in observed:
        top = o.top(w)
        x.append(top[:2] if top else (-50.0, -50.0))
        y.append(bool(top) and o.correct(top[2]))
    return np.array(x, float), np.array(y, bool), np.array([o.answerable for o in observed])


def _apply(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    return sigmoid(x @ weights[:2] + weights[2])


def _top1_by_weight(observed: list[Observed]) -> dict[float, float]:
    """Top-1 exact match on the answerable questions for each retriever weight."""
    answerable = [o for o in observed if o.answerable] or observed
    return {w: float(np.mean([bool(t) and o.correct(t[2])
                              for o in answerable for t in [o.top(w)]]))
            for w in RETRIEVER_WEIGHTS}


def _best_weight(by_weight: dict[float, float]) -> float:
    return max(by_weight, key=lambda k: (by_weight[k], -k))


def _held_out_ece(observed: list[Observed], seed: int) -> float | None:
    """Mean ECE over two halves, each measured with weight and Platt fit on the other."""
    order = list(range(len(observed)))
    random.Random(seed).shuffle(order)
    halves = [order[: len(order) // 2], order[len(order) // 2:]]
    errors = []
    for fit_on, test_on in (halves, halves[::-1]):
        if not fit_on or not test_on:
            continue
        train = [observed[i] for i in fit_on]
        w = _best_weight(_top1_by_weight(train))
        x, y, _ = _features(train, w)
        tx, ty, _ = _features([observed[i] for i in test_on], w)
        errors.append(expected_calibration_error(_apply(fit_platt(x, y), tx), ty))
    return round(float(np.mean(errors)), 4) if errors else None


def fit(observed: list[Observed], *, source: str = "", seed: int = 0) -> tuple[Calibration, dict]:
    """The retriever weight by exact match, then Platt scaling and the threshold.

    ECE is reported on held-out halves (weight and fit chosen on one, measured on the
    other) as well as on all the data, because a calibration measured where it was fitted
    flatters itself.
    """
    by_weight = _top1_by_weight(observed)
    w = _best_weight(by_weight)
    x, y, has = _features(observed, w)
    default = Calibration()
    before = np.array([default.confidence(s, m) for s, m in x])
    weights = fit_platt(x, y)
    confidence = _apply(weights, x)
    threshold = choose_threshold(confidence, y, has)
    note = ""
    if threshold is None:
        threshold = default.threshold
        note = ("no unanswerable questions: the abstention threshold keeps its default "
                f"{threshold}; calibrate on SQuAD 2.0 data to tune it")
    answered = confidence >= threshold
    calibration = Calibration(
        score_weight=float(weights[0]), margin_weight=float(weights[1]), bias=float(weights[2]),
        retriever_weight=w, threshold=round(threshold, 4), fitted=True,
        ece=round(expected_calibration_error(confidence, y), 4),
        ece_before=round(expected_calibration_error(before, y), 4), fitted_on=source)
    report = {
        "questions": len(observed), "answerable": int(has.sum()),
        "top1_exact_match_by_retriever_weight": by_weight, "retriever_weight": w,
        "top1_accuracy": float(y.mean()) if len(y) else 0.0,
        "ece_uncalibrated": calibration.ece_before, "ece_fitted": calibration.ece,
        "ece_held_out": _held_out_ece(observed, seed),
        "threshold": calibration.threshold,
        "answered_right": int((answered & y).sum()),
        "answered_wrong": int((answered & ~y).sum()),
        "abstained_unanswerable": int((~answered & ~has).sum()),
        "abstained_answerable": int((~answered & has).sum()),
    }
    if note:
        report["threshold_note"] = note
    chosen, options = choose_adaptive(observed, calibration)
    calibration.first_read, calibration.early_stop = chosen["first_read"], chosen["early_stop"]
    report["adaptive_reading"] = chosen
    report["adaptive_reading_options"] = options
    return calibration, report


def choose_adaptive(observed: list[Observed], calibration: Calibration
                    ) -> tuple[dict, list[dict]]:
    """The (first_read, early_stop) pair that reads the fewest passages on average while
    top-1 accuracy stays within EARLY_STOP_TOLERANCE of reading them all, with the
    simulation of every first_read tried. Reading is most of a question's latency."""
    options = [simulate_adaptive(observed, replace(
        calibration, first_read=first, early_stop=choose_early_stop(observed, calibration, first)))
        for first in FIRST_READS]
    return min(options, key=lambda o: (o["passages_read"], -o["first_read"])), options


def choose_early_stop(observed: list[Observed], calibration: Calibration,
                      first_read: int) -> float:
    """The lowest confidence at which QA may stop reading after `first_read` passages
    while its top-1 accuracy stays within EARLY_STOP_TOLERANCE of reading them all.

    Lower levels stop more often (faster answers); above every level it never stops.
    """
    for level in EARLY_STOP_LEVELS:
        trial = replace(calibration, early_stop=level, first_read=first_read)
        sim = simulate_adaptive(observed, trial)
        if sim["top1_accuracy_adaptive"] >= sim["top1_accuracy_read_all"] - EARLY_STOP_TOLERANCE:
            return level
    return 1.01


def simulate_adaptive(observed: list[Observed], calibration: Calibration) -> dict:
    """What QA's adaptive reading would do on these questions: how often it stops after
    the calibration's `first_read` passages, how many passages it reads on average, and
    its top-1 accuracy against reading every passage."""
    first_read = calibration.first_read
    stopped, read, right_adaptive, right_all = 0, 0, 0, 0
    for o in observed:
        full = o.top(calibration.retriever_weight)
        early = o.top(calibration.retriever_weight, depth=first_read)
        if early and calibration.confidence(*early[:2]) >= calibration.early_stop:
            stopped += 1
            read += min(first_read, o.passages)
            chosen = early
        else:
            read += o.passages
            chosen = full
        right_adaptive += bool(chosen) and o.correct(chosen[2])
        right_all += bool(full) and o.correct(full[2])
    n = max(len(observed), 1)
    return {"first_read": first_read, "early_stop": calibration.early_stop,
            "stopped_early": round(stopped / n, 4), "passages_read": round(read / n, 3),
            "top1_accuracy_adaptive": round(right_adaptive / n, 4),
            "top1_accuracy_read_all": round(right_all / n, 4)}


def calibrate(qa: QA, examples: list[SquadExample], reader_dir: str | Path | None = None, *,
              limit: int = 0, seed: int = 0, source: str = "", progress: bool = True
              ) -> tuple[Calibration, dict]:
    """Ask, fit, and (with `reader_dir`) save calibration.json beside the reader."""
    if limit and len(examples) > limit:
        examples = random.Random(seed).sample(examples, limit)
    observed = observe(qa, examples, progress=progress)
    calibration, report = fit(observed, source=source, seed=seed)
    if reader_dir is not None:
        report["saved"] = str(calibration.save(reader_dir))
    qa.calibration = replace(calibration)
    return calibration, report
