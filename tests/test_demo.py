"""`spanqa demo`: which questions it asks and how it grades its own answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

from api.demo import SHORT_ANSWER_WORDS, judge, short_answer_questions, tally
from api.qa import AskResult, Context, SpanAnswer
from reader.squad import load_squad


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
    assert line.startswith("2 of 6 answers right")
    assert "1 partly right" in line and "1 wrong" in line and "2 withheld" in line
    assert "\n" not in line
    assert "withheld" not in tally(["right", "wrong"])


def test_questions_are_a_seeded_sample_with_short_gold_answers(squad_dir):
    examples, _ = load_squad(squad_dir / "dev-v1.1.json")
    picked = short_answer_questions(examples, 6)
    assert len(picked) == 6 and picked == short_answer_questions(examples, 6)
    assert len({q for q, _ in picked}) == 6
    pairs = {(e.question, tuple(a.text for a in e.answers)) for e in examples}
    for question, golds in picked:
        assert (question, tuple(golds)) in pairs
        assert all(len(g.split()) <= SHORT_ANSWER_WORDS for g in golds)
    # Questions with a long gold answer exist and are never picked.
    long = {(e.question, tuple(a.text for a in e.answers)) for e in examples
            if any(len(a.text.split()) > SHORT_ANSWER_WORDS for a in e.answers)}
    many = short_answer_questions(examples, 500)
    assert long and len(many) == 500 and not long & {(q, tuple(g)) for q, g in many}


@pytest.mark.slow
def test_demo_trains_calibrates_answers_and_grades_itself(squad_dir, tmp_path):
    """The whole demo on a fresh data folder, with fewer training steps than the default."""
    env = {**os.environ, "SPANQA_DATA": str(tmp_path / "data"),
           "SPANQA_SQUAD_DIR": str(squad_dir)}
    run = subprocess.run([sys.executable, "-m", "api.cli", "demo", "--train-seconds", "20",
                          "--questions", "3"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    for step in ("[1/4]", "[2/4]", "[3/4] Calibrating", "[4/4]"):
        assert step in out, out
    assert re.search(r"dev-v1\.1, 300 questions with their paragraph: exact match [\d.]+, "
                     r"F1 [\d.]+", out), out
    assert len(re.findall(r"\(SQuAD gold: ", out)) == 3
    assert re.search(r"^\d of 3 answers right", out, re.MULTILINE), out
    assert (tmp_path / "data" / "readers" / "demo" / "calibration.json").is_file()
