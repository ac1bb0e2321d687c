"""The official SQuAD metrics (exact match and token F1), v1.1 and v2.0.

Papers and leaderboards report the numbers of the official `evaluate-v1.1.py` and
`evaluate-v2.0.py` scripts, so these functions reproduce them exactly, quirks included:
v1.1 gives F1 0 to an empty prediction against an empty gold answer, v2.0 gives it 1; v2.0
drops gold answers that normalize to nothing; v1.1 scores a missing prediction 0 while
v2.0 cannot score a dataset with missing predictions at all. Sums run in the scripts' order
so that even the last bits of the floats agree. tests/test_metrics.py checks them against
the scores the official v2.0 script printed for real leaderboard predictions and synthetic
messy ones on the SQuAD dev sets (`official-scores/` beside the shared SQuAD files); no copy
of the scripts is part of SpanQA.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation and the articles a/an/the, collapse whitespace.

    Only `string.punctuation` goes, not Unicode punctuation such as "–" or "“": that is what
    the official scripts do, and scores are only comparable under the same normalization.
    """
    text = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _overlap_f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """Bag-of-tokens F1; 0 when nothing overlaps (which also covers empty inputs)."""
    num_same = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def _f1_tokens(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """v2.0 token F1: an empty side means "no answer", right only if both are empty."""
    if not pred_tokens or not gold_tokens:
        return float(not pred_tokens and not gold_tokens)
    return _overlap_f1(pred_tokens, gold_tokens)


def exact_match(prediction: str, gold: str) -> float:
    """1.0 if the normalized strings are equal (so "" matches "" and "The" matches "")."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token F1 on normalized whitespace tokens, with the v2.0 rule for empty answers."""
    return _f1_tokens(normalize_answer(prediction).split(), normalize_answer(gold).split())


def _questions(dataset: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every question ("qas" entry) of the official JSON's "data" list, in file order."""
    for article in dataset:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def squad_v1(
    dataset: Sequence[Mapping[str, Any]], predictions: Mapping[str, str]
) -> dict[str, float]:
    """`evaluate-v1.1.py`: {"exact_match", "f1"} in percent, max over the gold answers.

    A question without a prediction scores 0. Like the script, a question without gold
    answers (an unanswerable SQuAD 2.0 question) is an error: use `squad_v2` for those.
    """
    total = 0
    exact_sum = f1_sum = 0.0
    for qa in _questions(dataset):
        total += 1
        if qa["id"] not in predictions:
            continue
        golds = [normalize_answer(a["text"]) for a in qa["answers"]]
        if not golds:
            raise ValueError(
                f"question {qa['id']!r} has no gold answer: SQuAD v1.1 scoring needs one "
                "(the official script fails here too); score SQuAD 2.0 data with squad_v2"
            )
        pred = normalize_answer(predictions[qa["id"]])
        pred_tokens = pred.split()
        exact_sum += max(float(pred == gold) for gold in golds)
        f1_sum += max(_overlap_f1(pred_tokens, gold.split()) for gold in golds)
    if total == 0:
        raise ValueError("the dataset has no questions")
    return {"exact_match": 100.0 * exact_sum / total, "f1": 100.0 * f1_sum / total}


def _eval_block(
    exact: Mapping[str, float], f1s: Mapping[str, float], qids: list[str]
) -> dict[str, float]:
    """Mean exact / F1 in percent over `qids`, as the script's `make_eval_dict`."""
    return {
        "exact": 100.0 * sum(exact[q] for q in qids) / len(qids),
        "f1": 100.0 * sum(f1s[q] for q in qids) / len(qids),
        "total": len(qids),
    }


def _best_thresh(
    predictions: Mapping[str, str],
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_ans: Mapping[str, bool],
) -> tuple[float, float]:
    """The script's `find_best_thresh`: best score if every question whose no-answer
    probability is above some threshold were answered "", and that threshold.

    Questions are swept by increasing probability (stable sort, so ties keep na_probs'
    order); an unanswerable question costs 1 when its raw prediction string is non-empty,
    even if it normalizes to "" (e.g. "the") — the script's rule, kept for equal numbers.
    """
    score: float = sum(1 for v in has_ans.values() if not v)
    best_score, best_thresh = score, 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            score += scores[qid]
        elif predictions[qid]:
            score -= 1
        if score > best_score:
            best_score, best_thresh = score, na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def squad_v2(
    dataset: Sequence[Mapping[str, Any]],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """`evaluate-v2.0.py`: exact, f1, total, then HasAns_* / NoAns_* (only for groups that
    occur), then best_exact(_thresh) and best_f1(_thresh) when `na_probs` is given.

    A question whose `na_probs` value exceeds `na_prob_thresh` counts as answered "". Works on
    v1.1 data too (every question then has an answer). Every question needs a prediction and,
    when `na_probs` is given, a probability: the script cannot score without them either.
    """
    has_ans: dict[str, bool] = {}
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    missing: list[str] = []
    for qa in _questions(dataset):
        qid = qa["id"]
        has_ans[qid] = bool(qa["answers"])
        if qid not in predictions:
            missing.append(qid)
            continue
        # Gold answers that normalize to "" are dropped; none left means "no answer".
        golds = [g for a in qa["answers"] if (g := normalize_answer(a["text"]))] or [""]
        pred = normalize_answer(predictions[qid])
        pred_tokens = pred.split()
        exact_raw[qid] = max(float(pred == gold) for gold in golds)
        f1_raw[qid] = max(_f1_tokens(pred_tokens, gold.split()) for gold in golds)
    if missing:
        raise ValueError(
            f"{len(missing)} question(s) have no prediction, e.g. {missing[0]!r} "
            "(the official v2.0 script cannot score this either; predict '' for no answer)"
        )
    if not has_ans:
        raise ValueError("the dataset has no questions")

    probs = dict.fromkeys(predictions, 0.0) if na_probs is None else na_probs
    absent = [qid for qid in exact_raw if qid not in probs]
    if absent:
        raise ValueError(f"{len(absent)} question(s) have no na_prob, e.g. {absent[0]!r}")
    exact, f1s = dict(exact_raw), dict(f1_raw)
    for qid in exact_raw:
        if probs[qid] > na_prob_thresh:
            exact[qid] = f1s[qid] = float(not has_ans[qid])

    result = _eval_block(exact, f1s, list(exact))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [qid for qid, has in has_ans.items() if has is wanted]
        if qids:
            block = _eval_block(exact, f1s, qids)
            result.update({f"{prefix}_{key}": value for key, value in block.items()})
    if na_probs is not None:
        best_exact, exact_thresh = _best_thresh(predictions, exact_raw, na_probs, has_ans)
        best_f1, f1_thresh = _best_thresh(predictions, f1_raw, na_probs, has_ans)
        result.update(
            best_exact=best_exact,
            best_exact_thresh=exact_thresh,
            best_f1=best_f1,
            best_f1_thresh=f1_thresh,
        )
    return result


def score_files(
    data_path: str | Path,
    predictions_path: str | Path,
    na_prob_path: str | Path | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """Score official-format files like `evaluate-v2.0.py DATA PRED [-n NA_PROB]` does.

    The v2.0 script also scores v1.1 data, so one command serves both versions.
    """
    data = json.loads(Path(data_path).read_text(encoding="utf-8"))
    predictions = json.loads(Path(predictions_path).read_text(encoding="utf-8"))
    na_probs = None
    if na_prob_path is not None:
        na_probs = json.loads(Path(na_prob_path).read_text(encoding="utf-8"))
    return squad_v2(data["data"], predictions, na_probs, na_prob_thresh)
