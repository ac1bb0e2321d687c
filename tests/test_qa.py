"""The question-answering pipeline over a real index, with a tiny random reader.

The tiny reader's answers are arbitrary, so these tests check what must hold for any
reader: offsets that point at the answer in the passage and in the source document,
ranking by raw scores across passages, merging, abstention, index reloads, calibration.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spanqa.api.calibration import (
    Calibration,
    choose_threshold,
    expected_calibration_error,
    fit_platt,
)
from spanqa.api.calibration_fit import (
    Observed,
    calibrate,
    choose_adaptive,
    choose_early_stop,
    simulate_adaptive,
)
from spanqa.api.qa import QA, AskRequest, context_window
from spanqa.indexer.build import update_index
from spanqa.reader.reader import Reader
from spanqa.reader.squad import load_squad
from spanqa.runtime.embedder import Embedder

REPO = Path(__file__).resolve().parents[1]
SHARED = ("The Amazon river carries more water than any other river. "
          "It flows through Brazil, Peru and Colombia into the Atlantic Ocean.")
DOCS = {
    "rivers/amazon.txt": SHARED,
    "rivers/amazon-copy.md": "# Amazon copy\n\n" + SHARED,
    "cities/paris.txt": "Paris is the capital of France. The Seine flows through Paris, "
                        "and the Louvre is the world's most visited museum.",
    "cities/rome.txt": "Rome is the capital of Italy. The Tiber flows through Rome.",
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("minilm")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("qa")
    docs = root / "docs"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    update_index(root / "index", add=[docs], embedder=embedder, progress=False)
    return root / "index", docs


@pytest.fixture(scope="module")
def reader(tiny_model) -> Reader:
    return Reader.from_pretrained(tiny_model)


def make_qa(corpus, reader, embedder, **calibration) -> QA:
    qa = QA(corpus[0], reader, calibration=Calibration(**calibration))
    qa.retriever._embedder = embedder
    return qa


def test_answers_point_at_their_passage_and_source_document(corpus, reader, embedder):
    qa = make_qa(corpus, reader, embedder, threshold=0.0)
    result = qa.ask("Which river flows through Paris?", top_k=5)
    assert result.answers and not result.handoff
    by_id = {h.passage_id: h for h in qa.retriever.search("Which river flows through Paris?", 20)}
    for a in result.answers:
        passage = by_id[a.passage_id].text
        assert passage[a.start:a.end] == a.text
        if a.path.endswith(".txt"):  # plain text: the document text is the file itself
            source = Path(a.path).read_text(encoding="utf-8")
            assert source[a.document_start:a.document_end] == a.text
        c = a.context
        assert c.text[c.answer_start:c.answer_end] == a.text
        assert f"**{a.text}**" in c.marked
        assert 0.0 <= a.confidence <= 1.0
    scores = [a.score for a in result.answers]
    assert scores == sorted(scores, reverse=True)


def test_a_batch_of_questions_finds_what_each_finds_alone(corpus, reader, embedder):
    """ask_many embeds its questions in one pass; the passages must not change."""
    qa = make_qa(corpus, reader, embedder, threshold=0.0)
    questions = ["Which river flows through Paris?", "What is the capital of Italy?",
                 "Where does the Amazon flow?"]
    requests = [AskRequest(q, 3, mode=m) for q, m in zip(questions, ("hybrid", "bm25", "dense"),
                                                       strict=True)]
    together = qa.ask_many(requests)
    for request, batched in zip(requests, together, strict=True):
        alone = qa.ask_many([request])[0]
        assert [h.passage_id for h in batched.passages] == \
            [h.passage_id for h in alone.passages]
        assert [h.score for h in batched.passages] == pytest.approx(
            [h.score for h in alone.passages], abs=1e-5)
        assert [a.text for a in batched.answers] == [a.text for a in alone.answers]


def test_spans_are_ranked_by_raw_logits_across_passages(corpus, reader, embedder):
    """The best answer is the best raw start+end score over every passage, not the best
    softmax probability within one passage."""
    qa = make_qa(corpus, reader, embedder, threshold=0.0)
    question = "What is the capital of Italy?"
    hits = qa.retriever.search(question, 20)
    predictions = reader.predict([question], [[h.text for h in hits]])[0]
    best = max((a for p in predictions for a in p.answers), key=lambda a: a.score)
    top = qa.ask(question, top_k=1).answers[0]
    assert (top.passage_id, top.start, top.end) == (
        hits[best.context_index].passage_id, best.start, best.end)
    assert math.isclose(top.score, best.score, abs_tol=1e-3)


def test_the_same_answer_from_two_passages_is_merged(corpus, reader, embedder):
    qa = make_qa(corpus, reader, embedder, threshold=0.0)
    result = qa.ask("Where does the Amazon river flow?", top_k=20)
    texts = [a.text.lower() for a in result.answers]
    assert len(texts) == len(set(texts))
    # Both copies of the Amazon text are retrieved, so their top spans appear twice, but
    # a span proposed several times by one passage counts once.
    assert any(a.occurrences >= 2 for a in result.answers)
    read = qa.retriever.search("Where does the Amazon river flow?", qa.retrieval_k)
    assert all(a.occurrences <= len(read) for a in result.answers)


def test_abstains_below_the_threshold_with_passages_and_handoff(corpus, reader, embedder):
    qa = make_qa(corpus, reader, embedder, threshold=1.01)
    result = qa.ask("Which river flows through Rome?")
    assert result.handoff and result.answers == []
    assert result.passages and "Rome" in result.passages[0].text
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["handoff"] is True and payload["passages"][0]["passage_id"]
    # The best span is kept as a lead for the person, marked as below the threshold.
    qa.calibration.threshold = 0.0
    top = qa.ask("Which river flows through Rome?").answers[0]
    qa.calibration.threshold = 1.01
    guess = qa.ask("Which river flows through Rome?").best_guess
    assert guess is not None and (guess.text, guess.passage_id) == (top.text, top.passage_id)
    assert guess.confidence < qa.calibration.threshold
    assert qa.ask("Which river flows through Rome?").answers == []
    qa.calibration.threshold = 0.0
    assert qa.ask("Which river flows through Rome?").best_guess is None


def test_adaptive_reading_stops_early_only_when_confident(corpus, reader, embedder):
    question = "Where does the Amazon river flow?"
    qa = make_qa(corpus, reader, embedder, threshold=0.0, fitted=True, early_stop=1.01)
    qa.first_read = 2
    retrieved = len(qa.retriever.search(question, qa.retrieval_k))
    assert retrieved > 2
    unsure = qa.ask(question, top_k=20)
    assert unsure.passages_read == retrieved  # never confident enough: reads everything
    qa.adaptive = False
    read_all = qa.ask(question, top_k=20)
    assert [(a.text, a.passage_id) for a in unsure.answers] == [
        (a.text, a.passage_id) for a in read_all.answers]
    qa.adaptive, qa.calibration.early_stop = True, 0.0
    sure = qa.ask(question, top_k=20)
    assert sure.passages_read == 2
    assert {a.passage_rank for a in sure.answers} <= {1, 2}
    qa.first_read, qa.calibration.first_read = None, 1  # the calibration's choice
    assert qa.ask(question, top_k=20).passages_read == 1
    qa.first_read = 2
    qa.calibration.fitted = False  # uncalibrated confidences mean nothing: read everything
    assert qa.ask(question).passages_read == retrieved


def test_bad_questions_are_refused(corpus, reader, embedder):
    qa = make_qa(corpus, reader, embedder)
    with pytest.raises(ValueError, match="empty"):
        qa.ask("   ")
    with pytest.raises(ValueError, match="top_k"):
        qa.ask("Rome?", top_k=0)


def test_reload_sees_a_new_generation_and_old_retrievers_keep_working(
        tmp_path, corpus, reader, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Oslo is the capital of Norway.", encoding="utf-8")
    update_index(tmp_path / "index", add=[docs], embedder=embedder, progress=False)
    qa = make_qa((tmp_path / "index", docs), reader, embedder, threshold=0.0)
    old = qa.retriever
    assert qa.reload() is False
    (docs / "b.txt").write_text("Lima is the capital of Peru.", encoding="utf-8")
    update_index(tmp_path / "index", add=[docs], embedder=embedder, progress=False)
    assert qa.reload() is True
    assert qa.retriever.generation != old.generation
    assert "Lima" in qa.ask("capital of Peru", top_k=1).passages[0].text
    assert all("Lima" not in h.text for h in old.search("capital of Peru", 5))


def test_context_window_cuts_at_spaces_and_marks_the_answer():
    text = "word " * 100 + "ANSWER here" + " word" * 100
    start = text.index("ANSWER")
    c = context_window(text, start, start + 6, chars=30)
    assert c.text.startswith("…") and c.text.endswith("…")
    assert c.text[c.answer_start:c.answer_end] == "ANSWER"
    assert "**ANSWER**" in c.marked and len(c.text) < 80
    whole = context_window("ANSWER", 0, 6)
    assert whole.text == "ANSWER" and whole.marked == "**ANSWER**"


def test_platt_scaling_recovers_a_known_sigmoid_and_lowers_calibration_error():
    rng = np.random.default_rng(0)
    score = rng.normal(0, 3, size=(4000, 2))
    true = 1 / (1 + np.exp(-(0.8 * score[:, 0] - 0.3 * score[:, 1] + 0.5)))
    correct = rng.random(4000) < true
    w = fit_platt(score, correct)
    assert np.allclose(w, [0.8, -0.3, 0.5], atol=0.12)
    fitted = 1 / (1 + np.exp(-(score @ w[:2] + w[2])))
    naive = 1 / (1 + np.exp(-score[:, 0]))
    assert expected_calibration_error(fitted, correct) < 0.03
    assert expected_calibration_error(naive, correct) > expected_calibration_error(fitted,
                                                                                    correct)


def test_threshold_answers_wrongly_less_often_than_it_abstains_on_unanswerable():
    rng = np.random.default_rng(1)
    answerable = rng.random(500) < 0.5
    correct = answerable & (rng.random(500) < 0.7)
    confidence = np.clip(np.where(correct, 0.7, 0.3) + rng.normal(0, 0.15, 500), 0, 1)
    t = choose_threshold(confidence, correct, answerable)
    answered = confidence >= t
    assert (answered & ~correct).sum() < (~answered & ~answerable).sum()
    assert (answered & correct).sum() > 0.5 * correct.sum()


def test_threshold_prefers_fewer_wrong_answers_among_equals_and_needs_unanswerables():
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    correct = np.array([1, 1, 0, 0, 0, 0, 0], bool)
    answerable = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    # Thresholds 0.8 and 0.7... all answer the two right ones; 0.8 answers no wrong one.
    assert choose_threshold(confidence, correct, answerable) == 0.8
    assert choose_threshold(confidence, correct, np.ones(7, bool)) is None


def test_abstention_follows_the_top_answer_as_the_threshold_was_tuned(corpus, reader,
                                                                       embedder):
    qa = make_qa(corpus, reader, embedder, threshold=0.0)
    answers = qa.ask("Where does the Amazon river flow?", top_k=20).answers
    assert len(answers) >= 2
    # A threshold between the top answer and a better-calibrated later one: the later one
    # must not be shown on its own, because the threshold was tuned on the top answer.
    best_later = max(a.confidence for a in answers[1:])
    if best_later > answers[0].confidence:
        qa.calibration.threshold = (answers[0].confidence + best_later) / 2
        result = qa.ask("Where does the Amazon river flow?", top_k=20)
        assert result.handoff and result.answers == []
    qa.calibration.threshold = answers[0].confidence
    result = qa.ask("Where does the Amazon river flow?", top_k=20)
    assert not result.handoff and result.answers[0].text == answers[0].text
    assert all(a.confidence >= answers[0].confidence for a in result.answers)


def test_early_stop_is_the_lowest_level_that_keeps_read_all_accuracy():
    easy = [Observed([(10.0, 5.0, 1, "a")], ["a"]) for _ in range(10)]
    # The best span of a hard question is in passage 10; passage 1 offers a weak wrong one.
    hard = [Observed([(1.0, 0.0, 1, "x"), (12.0, 5.0, 10, "b")], ["b"]) for _ in range(10)]
    calibration = Calibration(score_weight=1.0, margin_weight=0.0, bias=-5.0, fitted=True)
    level = choose_early_stop(easy + hard, calibration, first_read=5)
    assert level == 0.05  # 0.0 would stop on the hard ones (confidence 0.018) too
    calibration.early_stop = level
    sim = simulate_adaptive(easy + hard, calibration)
    assert sim["stopped_early"] == 0.5
    assert sim["top1_accuracy_adaptive"] == sim["top1_accuracy_read_all"] == 1.0


def test_adaptive_reading_reads_as_few_passages_as_keep_the_accuracy():
    # Easy questions are answered confidently in passage 1 or 2; hard ones only in 10.
    one = [Observed([(10.0, 5.0, 1, "a")], ["a"], passages=20) for _ in range(10)]
    two = [Observed([(1.0, 0.0, 1, "x"), (10.0, 5.0, 2, "a")], ["a"], passages=20)
           for _ in range(10)]
    hard = [Observed([(1.0, 0.0, 1, "x"), (12.0, 5.0, 10, "b")], ["b"], passages=20)
            for _ in range(10)]
    calibration = Calibration(score_weight=1.0, margin_weight=0.0, bias=-5.0, fitted=True)
    chosen, options = choose_adaptive(one + two + hard, calibration)
    by_first = {o["first_read"]: o for o in options}
    # Reading 1 first stops on a third (1 + 19 * 2/3 = 13.67 on average); reading 2 first
    # stops on two thirds (2 * 2/3 + 20/3 = 8.0); more first reads only cost.
    assert by_first[1]["passages_read"] == pytest.approx(13.667, abs=1e-3)
    assert chosen["first_read"] == 2 and chosen["passages_read"] == 8.0
    assert chosen["top1_accuracy_adaptive"] == chosen["top1_accuracy_read_all"] == 1.0


def test_calibrate_fits_saves_and_is_loaded_with_the_reader(tmp_path, squad_dir, tiny_model,
                                                            embedder):
    import shutil

    reader_dir = shutil.copytree(tiny_model, tmp_path / "reader")
    update_index(tmp_path / "index", add=[squad_dir / "sample-v2.0.json"], embedder=embedder,
                 progress=False)
    qa = QA(tmp_path / "index", reader_dir, retrieval_k=3)
    qa.retriever._embedder = embedder
    assert qa.calibration.fitted is False
    if qa.reader.backend != "torch":  # a compiled graph reads: the fp32 weights were let go
        assert qa.reader.model is None
    examples, _ = load_squad(squad_dir / "sample-v2.0.json")
    calibration, report = calibrate(qa, examples, reader_dir, progress=False)
    assert report["questions"] == len(examples)
    assert report["answerable"] == sum(bool(e.answers) for e in examples)
    assert 0.0 <= report["ece_fitted"] <= 1.0 and calibration.fitted
    loaded = QA(tmp_path / "index", reader_dir).calibration
    assert loaded == calibration


def spanqa(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spanqa.api.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


def test_ask_command_prints_json_and_text(corpus, tiny_model):
    done = spanqa("ask", "What is the capital of France?", "--index", str(corpus[0]),
                  "--reader", str(tiny_model), "--json", "--top-k", "2", "--read-all")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["question"] == "What is the capital of France?"
    assert {"answers", "handoff", "passages", "timing_ms"} <= result.keys()
    assert result["passages_read"] == len(result["passages"]) > 0
    text = spanqa("ask", "capital of France", "--index", str(corpus[0]), "--reader",
                  str(tiny_model))
    assert text.returncode == 0 and "Q: capital of France" in text.stdout
    for bad in (["--first-read", "0"], ["--first-read", "2", "--read-all"]):
        refused = spanqa("ask", "capital?", "--index", str(corpus[0]), *bad)
        assert refused.returncode == 2 and "--first-read" in refused.stderr


def test_ask_without_any_reader_says_how_to_get_one(corpus, tmp_path):
    done = spanqa("ask", "capital?", "--index", str(corpus[0]), SPANQA_DATA=str(tmp_path))
    assert done.returncode == 2
    assert "spanqa demo" in done.stderr and "--reader" in done.stderr


def test_reload_follows_an_index_rebuilt_with_another_embedding_backend(tmp_path, reader,
                                                                       corpus):
    """A running service whose index is rebuilt with another backend must embed its
    questions (and its uploads) the new way, not keep the old model."""
    from spanqa.api.jobs import SharedEmbedder

    index = tmp_path / "index"
    old = Embedder("minilm", backend="torch")
    update_index(index, add=[corpus[1]], rebuild=True, embedder=old, progress=False)
    qa = QA(index, reader, calibration=Calibration(threshold=0.0))
    shared = SharedEmbedder(old)
    qa.retriever._embedder = shared
    assert qa.retriever.embedder_backend == "torch"
    update_index(index, add=[corpus[1]], rebuild=True,
                 embedder=Embedder("minilm", backend="onnx-int8"), progress=False)
    assert qa.reload()
    assert qa.retriever.embedder_backend == "onnx-int8"
    assert shared.backend == "onnx-int8" and shared.inner.backend == "onnx-int8"
    assert qa.retriever.matches(shared)
    assert qa.ask("Which river flows through Paris?").passages[0].title
