"""`spanqa demo`: which questions it asks and how it grades its own answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

from spanqa.api.demo import (
    MIN_OVERLAP,
    SHORT_ANSWER_WORDS,
    answerable_questions,
    judge,
    question_overlap,
    tally,
)
from spanqa.api.qa import AskResult, Context, SpanAnswer
from spanqa.reader.squad import GoldAnswer, SquadExample, load_squad


def answer(text: str) -> SpanAnswer:
    return SpanAnswer(text=text, confidence=0.5, score=1.0, passage_id="p", document_id="d",
                      title="T", path="t.txt", page=None, start=0, end=len(text),
                      document_start=0, document_end=len(text),
                      context=Context(text, 0, len(text), f"**{text}**"), passage_rank=1)


def result(text: str | None, *, handoff: bool = False) -> AskResult:
    shown = answer(text) if text is not None else None
    return AskResult(question="q?", answers=[] if handoff or shown is None else [shown],
                     handoff=handoff or shown is None, passages=[],
                     best_guess=shown if handoff else None)


@pytest.mark.parametrize(("text", "handoff", "verdict"), [
    ("Schedule 5", False, "right"),
    ("schedule 5.", False, "right"),  # the official normalisation: case, punctuation
    ("the Schedule 5", False, "right"),  # and articles
    ("Schedule 5 to the Scotland Act", False, "partly"),  # F1 0.57 against "Schedule 5"
    ("Schedule 5 to the Scotland Act as reserved matters", False, "wrong"),  # F1 0.4
    ("the Scotland Act", False, "wrong"),
    ("Schedule 5", True, "withheld-right"),
    ("Scotland", True, "withheld"),
    (None, False, "withheld"),  # nothing found at all
])
def test_judge_grades_the_top_answer_against_any_gold(text, handoff, verdict):
    assert judge(result(text, handoff=handoff), ["Schedule 5", "Schedule 5."]) == verdict


def test_judge_takes_the_best_of_several_golds():
    assert judge(result("thylakoids"), ["grana and thylakoids", "thylakoids"]) == "right"
    assert judge(result("grana"), ["grana and thylakoids", "normal grana"]) == "partly"


def test_tally_counts_each_kind_in_one_line():
    line = tally(["right", "right", "partly", "wrong", "withheld", "withheld-right"])
    assert line.startswith("2 of 6 questions answered right")
    assert "2 of the 4 answers given" in line
    assert "1 partly right" in line and "1 wrong" in line and "2 withheld" in line
    assert "\n" not in line
    assert "0 withheld" in tally(["right", "wrong"])


def test_questions_are_a_seeded_sample_of_easy_ones(squad_dir):
    examples, _ = load_squad(squad_dir / "dev-v1.1.json")
    picked = answerable_questions(examples, 8)
    assert len(picked) == 8 and picked == answerable_questions(examples, 8)
    assert picked != answerable_questions(examples, 8, seed=8)
    easy = {(e.question, tuple(a.text for a in e.answers)) for e in examples
            if all(len(a.text.split()) <= SHORT_ANSWER_WORDS for a in e.answers)
            and question_overlap(e) >= MIN_OVERLAP}
    assert {(q, tuple(g)) for q, g in picked} <= easy
    # Each filter leaves questions out: long answers, and wording unlike the answer's.
    hard = [e for e in examples if question_overlap(e) < MIN_OVERLAP]
    long = [e for e in examples
            if any(len(a.text.split()) > SHORT_ANSWER_WORDS for a in e.answers)]
    assert hard and long and len(easy) < len(examples) - max(len(hard), len(long))


def example(question: str, answer: str) -> SquadExample:
    context = "Paris is large. The Eiffel Tower was built in 1889 for a fair. It is tall."
    return SquadExample(id="q", title="t", context=context, question=question,
                        answers=[GoldAnswer(answer, context.index(answer))])


def test_overlap_counts_the_questions_words_in_the_answers_sentence():
    # eiffel, tower, built: all in the second sentence, which holds the answer
    assert question_overlap(example("When was the Eiffel Tower built?", "1889")) == 1.0
    # year, fair, open: only "fair" is there
    assert question_overlap(example("What year did the fair open?", "1889")) == pytest.approx(1 / 3)
    # the words are in the text, but not in the answer's sentence
    assert question_overlap(example("Is Paris large?", "1889")) == 0.0


@pytest.mark.slow
def test_demo_trains_calibrates_answers_and_grades_itself(squad_dir, tmp_path):
    """The whole demo on a fresh data folder, with fewer training steps than the default."""
    env = {**os.environ, "SPANQA_DATA": str(tmp_path / "data"),
           "SPANQA_SQUAD_DIR": str(squad_dir)}
    run = subprocess.run([sys.executable, "-m", "spanqa.api.cli", "demo", "--train-seconds", "20",
                          "--questions", "3"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    for step in ("[1/4]", "[2/4]", "[3/4] Calibrating", "[4/4]"):
        assert step in out, out
    assert re.search(r"dev-v1\.1, 300 questions with their paragraph: exact match [\d.]+, "
                     r"F1 [\d.]+", out), out
    assert len(re.findall(r"\(SQuAD gold: ", out)) == 3
    assert re.search(r"^\d of 3 questions answered right", out, re.MULTILINE), out
    assert (tmp_path / "data" / "readers" / "demo" / "calibration.json").is_file()
