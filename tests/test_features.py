"""Windows, labels and character offsets, including text that tokenizers normalise."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from spanqa.reader.features import FeatureConfig, build_features, extend_over_combining
from spanqa.reader.postprocess import postprocess
from spanqa.reader.squad import load_squad
from spanqa.reader.train import train_labels

UNICODE_CASES = [
    ("Le café de la gare est à Paris, près de la Seine.", "café"),
    ("Elle était naïve, et le cafe\u0301 était fermé ce jour-là.", "cafe\u0301"),
    ("Zoë Saldaña was born in Passaic, New Jersey.", "Zoë Saldaña"),
    ("東京は日本の首都です。東京タワーは有名です。", "東京タワー"),
    ("I love pizza 🍕 and the answer is 42 🎉 indeed.", "pizza 🍕"),
    ("A family 👩\u200d👩\u200d👧 photo was taken in Kraków in 1999.", "Kraków"),
    ("The ﬁle named résumé\u0301s was lost.", "résumé\u0301s"),
]


def _windows(tokenizer, question, context, config, answer=None):
    answers = None
    if answer is not None:
        start = context.index(answer)
        answers = [(start, start + len(answer))]
    return build_features(tokenizer, [question], [context], config, answers)


@pytest.mark.parametrize("tokenizer_name", ["minilm_tokenizer", "cased_tokenizer"])
@pytest.mark.parametrize(("context", "answer"), UNICODE_CASES)
def test_labels_map_back_to_exact_answer_text(request, tokenizer_name, context, answer):
    tokenizer = request.getfixturevalue(tokenizer_name)
    feats = _windows(tokenizer, "What is it?", context, FeatureConfig(64, 16, 16), answer)
    assert len(feats) == 1
    start, end = feats.start_positions[0], feats.end_positions[0]
    assert start > 0, "the answer lies inside the window, so the label is not [CLS]"
    offsets = feats.offsets[0]
    text = context[offsets[start][0] : extend_over_combining(context, offsets[end][1])]
    assert text == answer


@pytest.mark.parametrize("tokenizer_name", ["minilm_tokenizer", "cased_tokenizer"])
@pytest.mark.parametrize(("context", "answer"), UNICODE_CASES)
def test_context_offsets_are_ordered_and_inside_the_text(request, tokenizer_name, context, answer):
    tokenizer = request.getfixturevalue(tokenizer_name)
    feats = _windows(tokenizer, "What?", context, FeatureConfig(64, 16, 16))
    spans = [s for s in feats.offsets[0] if s is not None]
    assert spans, "context tokens carry offsets"
    for (s0, e0), (s1, _) in itertools.pairwise(spans):
        assert s0 < e0 <= s1 or (s0, e0) == (s1, _)
    for s, e in spans:
        piece = context[s:e]
        assert piece and piece == piece.strip()


def test_cased_tokenizer_keeps_case(cased_tokenizer):
    tokens = cased_tokenizer.tokenize("Paris paris")
    assert tokens == ["Paris", "paris"]


def test_long_context_windows_overlap_by_doc_stride(minilm_tokenizer):
    context = " ".join(f"word{i} is here." for i in range(120))
    config = FeatureConfig(max_seq_length=64, doc_stride=16, max_query_length=16)
    feats = _windows(minilm_tokenizer, "Which word is here?", context, config)
    assert len(feats) > 3
    assert all(len(ids) <= 64 for ids in feats.input_ids)
    assert set(feats.example_index) == {0}
    windows = [[s for s in offsets if s is not None] for offsets in feats.offsets]
    for left, right in itertools.pairwise(windows):
        assert left[-16:] == right[:16], "consecutive windows share doc_stride tokens"
    covered = sorted({s for w in windows for s in w})
    assert covered[0][0] == 0 and covered[-1][1] == len(context)


def test_answer_outside_a_window_points_at_cls(minilm_tokenizer):
    context = " ".join(f"filler{i}." for i in range(100)) + " The treasure is gold."
    config = FeatureConfig(max_seq_length=48, doc_stride=8, max_query_length=16)
    feats = _windows(minilm_tokenizer, "What is the treasure?", context, config, "gold")
    labels = list(zip(feats.start_positions, feats.end_positions, strict=True))
    assert labels[-1][0] > 0, "the last window holds the answer"
    assert all(label == (0, 0) for label in labels[:-1])


def test_unanswerable_labels_point_at_cls(minilm_tokenizer):
    feats = build_features(minilm_tokenizer, ["Who?"], ["Nobody is named here."],
                           FeatureConfig(64, 16, 16), [None])
    assert feats.start_positions == [0] and feats.end_positions == [0]


def test_long_question_is_truncated_to_max_query_length(minilm_tokenizer):
    question = "why " * 100 + "?"
    feats = _windows(minilm_tokenizer, question, "Because it is.", FeatureConfig(64, 8, 10))
    question_tokens = [s for s in feats.offsets[0][1:] if s is None]
    assert len(question_tokens) - 2 <= 10  # minus the two [SEP]


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="doc_stride"):
        FeatureConfig(max_seq_length=64, doc_stride=60, max_query_length=16)
    with pytest.raises(ValueError, match="max_seq_length"):
        FeatureConfig(max_seq_length=20, doc_stride=2, max_query_length=16)


def test_gold_logits_decode_to_gold_text_on_real_squad(minilm_tokenizer, squad_dir):
    """Every answer of the real sample survives windowing and post-processing exactly."""
    examples, _ = load_squad(squad_dir / "sample-v1.1.json", for_training=True)
    config = FeatureConfig(max_seq_length=128, doc_stride=32, max_query_length=32)
    feats = build_features(minilm_tokenizer, [e.question for e in examples],
                           [e.context for e in examples], config, train_labels(examples))
    assert len(feats) > len(examples), "long contexts are split into several windows"
    starts, ends = [], []
    for ids, s, e in zip(feats.input_ids, feats.start_positions, feats.end_positions,
                         strict=True):
        start, end = np.zeros(len(ids)), np.zeros(len(ids))
        start[s] += 10.0
        end[e] += 10.0
        starts.append(start)
        ends.append(end)
    preds = postprocess(feats, starts, ends, [e.context for e in examples])
    for example, pred in zip(examples, preds, strict=True):
        assert pred.best.text == example.answers[0].text
        assert example.context[pred.best.start : pred.best.end] == pred.best.text
