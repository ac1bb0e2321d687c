"""Span selection across windows, null scores and thresholds."""

from __future__ import annotations

import numpy as np

from spanqa.reader.features import Features
from spanqa.reader.postprocess import postprocess

CONTEXT = "alpha beta gamma delta"
#          0     6    11    17
SPANS = [(0, 5), (6, 10), (11, 16), (17, 22)]


def _features(windows: list[list[int]]) -> Features:
    """Windows over CONTEXT: [CLS] q [SEP] <context tokens by index> [SEP]."""
    feats = Features()
    for tokens in windows:
        offsets = [None, None, None] + [SPANS[t] for t in tokens] + [None]
        feats.input_ids.append([0] * len(offsets))
        feats.token_type_ids.append([0] * len(offsets))
        feats.offsets.append(offsets)
        feats.example_index.append(0)
    return feats


def _logits(n: int, values: dict[int, float], cls: float = 0.0) -> np.ndarray:
    out = np.full(n, -10.0)
    out[0] = cls
    for i, v in values.items():
        out[i] = v
    return out


def test_best_span_wins_and_text_matches_offsets():
    feats = _features([[0, 1, 2, 3]])
    preds = postprocess(feats, [_logits(8, {4: 5.0})], [_logits(8, {5: 5.0})], [CONTEXT])
    best = preds[0].best
    assert (best.text, best.start, best.end) == ("beta gamma", 6, 16)
    assert best.score == 10.0
    assert abs(sum(a.probability for a in preds[0].answers) - 1.0) < 1e-6


def test_spans_in_question_or_reversed_or_too_long_are_rejected():
    feats = _features([[0, 1, 2, 3]])
    # Highest start logit sits on a question token (1), highest end before the start.
    start = _logits(8, {1: 9.0, 5: 4.0})
    end = _logits(8, {3: 9.0, 4: 8.0, 6: 3.0})
    best = postprocess(feats, [start], [end], [CONTEXT])[0].best
    assert best.text == "gamma delta"
    short = postprocess(feats, [start], [end], [CONTEXT], max_answer_length=1)[0].best
    assert short.text != "gamma delta" and len(short.text.split()) == 1


def test_null_score_is_the_minimum_over_windows_and_threshold_applies():
    feats = _features([[0, 1], [1, 2, 3]])
    s0, e0 = _logits(6, {4: 1.0}, cls=3.0), _logits(6, {4: 1.0}, cls=3.0)
    s1, e1 = _logits(7, {4: 2.0}, cls=0.5), _logits(7, {5: 2.0}, cls=0.5)
    pred = postprocess(feats, [s0, s1], [e0, e1], [CONTEXT], with_null=True)[0]
    assert pred.null_score == 1.0  # min(3+3, 0.5+0.5)
    assert pred.best.text == "gamma delta" and pred.best.score == 4.0
    assert pred.null_odds == 1.0 - 4.0
    assert pred.text(threshold=3.0) == "gamma delta"  # 4 - 1 >= 3
    assert pred.text(threshold=3.5) == ""
    assert pred.text(threshold=None) == "gamma delta"
    assert sum(a.probability for a in pred.answers) < 1.0, "null takes its share"


def test_overlapping_windows_propose_a_span_once_with_its_best_score():
    feats = _features([[0, 1, 2], [1, 2, 3]])
    s0, e0 = _logits(7, {4: 2.0}), _logits(7, {5: 2.0})
    s1, e1 = _logits(7, {3: 3.0}), _logits(7, {4: 3.0})
    pred = postprocess(feats, [s0, s1], [e0, e1], [CONTEXT])[0]
    texts = [a.text for a in pred.answers]
    assert texts.count("beta gamma") == 1
    assert pred.best.text == "beta gamma" and pred.best.score == 6.0


def _every_pair(feats: Features, starts, ends, context: str, n_best: int, max_len: int):
    """The plain reference: score every pair of each window's n_best starts and ends."""
    found: dict[tuple[int, int], float] = {}
    for f, offsets in enumerate(feats.offsets):
        s_top = np.argsort(starts[f])[::-1][:n_best]
        e_top = np.argsort(ends[f])[::-1][:n_best]
        for s in s_top:
            for e in e_top:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_len:
                    continue
                key = (offsets[s][0], offsets[e][1])
                found[key] = max(found.get(key, -np.inf), float(starts[f][s] + ends[f][e]))
    return sorted(found.items(), key=lambda kv: -kv[1])[:n_best]


def test_spans_match_scoring_every_pair_over_overlapping_windows():
    # Four windows sliding over the context, so spans repeat across windows with other
    # scores; the n_best best of the example must be exactly those of the plain reference.
    rng = np.random.default_rng(0)
    windows = [[0, 1, 2], [1, 2, 3], [2, 3], [0, 1, 2, 3]]
    feats = _features(windows)
    for n_best, max_len in ((20, 30), (3, 2), (1, 1), (5, 4)):
        starts = [rng.normal(size=len(o)).astype(np.float32) for o in feats.offsets]
        ends = [rng.normal(size=len(o)).astype(np.float32) for o in feats.offsets]
        pred = postprocess(feats, starts, ends, [CONTEXT], n_best=n_best,
                           max_answer_length=max_len)[0]
        expected = _every_pair(feats, starts, ends, CONTEXT, n_best, max_len)
        assert [((a.start, a.end), a.score) for a in pred.answers] == expected
        assert all(CONTEXT[a.start:a.end] == a.text for a in pred.answers)
