"""The Python API and the `spanqa reader` commands on a small trained run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spanqa.reader.config import TrainConfig
from spanqa.reader.reader import Reader
from spanqa.reader.train import train

REPO = Path(__file__).resolve().parents[1]
QUESTION = "What is the capital of France?"
CONTEXTS = [
    "Paris is the capital and most populous city of France, on the Seine.",
    "Berlin is the capital of Germany. Madrid is the capital of Spain.",
]


@pytest.fixture(scope="module")
def run_dir(squad_dir, tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reader-run") / "run"
    data = str(squad_dir / "sample-v2.0.json")
    train(TrainConfig(train=data, dev=data, out=str(out), model=str(tiny_model), epochs=1,
                      batch_size=8, lr=1e-3, max_seq_length=128, doc_stride=32,
                      max_query_length=32, evals_per_epoch=1, progress=False))
    return out


def spanqa(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spanqa.api.cli", *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_reader_loads_its_settings_and_ranks_spans_across_contexts(run_dir):
    reader = Reader.from_pretrained(run_dir)
    assert reader.config.max_seq_length == 128
    assert isinstance(reader.null_threshold, float), "a v2.0 run keeps its tuned threshold"
    reader.null_threshold = None  # every span competes, whatever the null score
    answers = reader.answer(QUESTION, CONTEXTS, top_k=5)
    assert len(answers) == 5
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    probabilities = [a.probability for a in answers]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
    for a in answers:
        assert CONTEXTS[a.context_index][a.start : a.end] == a.text
    assert reader.answer(QUESTION, [], top_k=3) == []


def test_batched_answers_equal_one_question_at_a_time(run_dir):
    # fp32: in bf16 a window's last bits move with the shapes of the batch around it
    reader = Reader.from_pretrained(run_dir, batch_size=3, precision="fp32")
    reader.null_threshold = None
    questions = [QUESTION, "Which river flows through Paris?", "What is Madrid?"]
    contexts = [CONTEXTS, CONTEXTS[:1], CONTEXTS[1:]]
    together = reader.answer_many(questions, contexts, top_k=2)
    for q, c, batch_answers in zip(questions, contexts, together, strict=True):
        alone = reader.answer(q, c, top_k=2)
        assert [(a.text, a.context_index) for a in alone] == \
               [(a.text, a.context_index) for a in batch_answers]
        for x, y in zip(alone, batch_answers, strict=True):
            assert x.score == pytest.approx(y.score, abs=1e-4)


def test_null_threshold_decides_whether_an_answer_is_returned(run_dir):
    reader = Reader.from_pretrained(run_dir)
    reader.null_threshold = 1e9
    assert reader.answer(QUESTION, CONTEXTS) == []
    reader.null_threshold = -1e9
    assert len(reader.answer(QUESTION, CONTEXTS)) == 1


def test_predict_command_prints_json_answers(run_dir, tmp_path):
    run = spanqa("reader", "predict", "--model", str(run_dir), "--question", QUESTION,
                 "--context", CONTEXTS[0], "--context", CONTEXTS[1], "--top-k", "2")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["question"] == QUESTION
    for a in record["answers"]:
        assert CONTEXTS[a["context_index"]][a["start"] : a["end"]] == a["text"]
    lines = [json.dumps({"question": QUESTION, "contexts": CONTEXTS}),
             json.dumps({"question": "Where is Berlin?", "context": CONTEXTS[1]})]
    run = spanqa("reader", "predict", "--model", str(run_dir), "--input", "-",
                 stdin="\n".join(lines) + "\n")
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["question"] for line in run.stdout.splitlines()] == \
           [QUESTION, "Where is Berlin?"]
    bad = spanqa("reader", "predict", "--model", str(run_dir), "--input", "-",
                 stdin=lines[0] + "\n{not json}\n")
    assert bad.returncode != 0 and "-:2:" in bad.stderr


def test_evaluate_writes_official_files_that_score_as_it_reported(run_dir, squad_dir, tmp_path):
    """The files `evaluate` writes are what it scored: `spanqa reader score` (tested against
    the official script's own numbers in test_metrics.py) gives its summary back."""
    data = squad_dir / "sample-v2.0.json"
    run = spanqa("reader", "evaluate", "--model", str(run_dir), "--data", str(data),
                 "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    null_odds = json.loads((tmp_path / "null_odds.json").read_text())
    nbest = json.loads((tmp_path / "nbest_predictions.json").read_text())
    ids = {q["id"] for a in json.loads(data.read_text())["data"]
           for p in a["paragraphs"] for q in p["qas"]}
    assert set(predictions) == set(null_odds) == set(nbest) == ids
    assert all(isinstance(v, float) for v in null_odds.values())
    assert all(isinstance(v, str) for v in predictions.values())
    ours = spanqa("reader", "score", str(data), str(tmp_path / "predictions.json"),
                  "--na-prob", str(tmp_path / "null_odds.json"))
    scored = json.loads(ours.stdout)
    for key in ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh"):
        assert scored[key] == pytest.approx(summary[key], abs=1e-9), key
