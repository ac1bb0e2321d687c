"""reader.metrics against the scores the official SQuAD v2.0 script printed, and by hand.

The oracle is `official-scores/` in the shared SQuAD folder (its README.md): for each
`PART-VERSION.SYSTEM.predictions.json`, `PART-VERSION.SYSTEM.official.json` holds what the
official script printed for it (with `-n PART-VERSION.messy.na_probs.json` for the messy
files). The predictions are real leaderboard systems' plus synthetic ones that stress
normalization, empty answers and no-answer thresholds. The script itself is not shipped:
the unit tests below state the expected values, worked out from the documented rules.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spanqa.reader.metrics import exact_match, f1, normalize_answer, score_files, squad_v1, squad_v2

REPO = Path(__file__).resolve().parents[1]
# Only to name the cases at collection time (fixtures do not exist yet); the same rule as
# conftest's `squad_dir`, which every test below takes its files from.
_COLLECTION_DIR = (
    Path(os.environ.get("SPANQA_SQUAD_DIR", REPO.parent / "shared" / "squad")) / "official-scores"
)
# 2 parts (dev, sample) x (5 v1.1 systems + 3 v2.0 systems + a messy set per version).
EXPECTED_PREDICTION_FILES = 20
_NAME = re.compile(
    r"(?P<data>(?:dev|sample)-v(?P<version>1\.1|2\.0))\.(?P<system>[a-z0-9-]+)\.predictions\.json"
)
PREDICTION_FILES = sorted(p.name for p in _COLLECTION_DIR.glob("*.predictions.json"))
V1_PREDICTION_FILES = [n for n in PREDICTION_FILES if "-v1.1." in n]

Dataset = list[dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """One official-scores entry: the SQuAD file, the predictions, what the script printed."""

    stem: str  # "dev-v2.0.messy"
    data: Path
    predictions: Path
    na_probs: Path | None
    official: dict[str, Any]


def _case(squad_dir: Path, name: str) -> Case:
    match = _NAME.fullmatch(name)
    assert match, name
    folder = squad_dir / "official-scores"
    stem = name.removesuffix(".predictions.json")
    na_probs = folder / f"{stem}.na_probs.json"
    return Case(
        stem=stem,
        data=squad_dir / f"{match['data']}.json",
        predictions=folder / name,
        na_probs=na_probs if na_probs.is_file() else None,
        official=_read(folder / f"{stem}.official.json"),
    )


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@functools.cache
def _dataset(path: Path) -> Dataset:
    return _read(path)["data"]


def _questions(dataset: Dataset) -> list[dict[str, Any]]:
    return [qa for article in dataset for p in article["paragraphs"] for qa in p["qas"]]


def _score_answering_up_to(case: Case, thresh: float, metric: str) -> float:
    """The best_* score the official threshold search reports for `thresh`, worked out
    directly: every question whose no-answer probability is at most `thresh` keeps its
    prediction, the others are answered "". An unanswerable question scores 1 unless it is
    kept with a non-empty raw prediction (the search's rule, even when the prediction
    normalizes to ""); an answerable one scores its raw exact / F1 when kept, else 0.

    (Exact as long as no other question shares `thresh` as its probability and the
    search did not stop in the middle of such a tie; the callers check there is none.)
    """
    score_one = exact_match if metric == "exact" else f1
    predictions = _read(case.predictions)
    assert case.na_probs is not None
    na_probs = _read(case.na_probs)
    questions = _questions(_dataset(case.data))
    total = 0.0
    for qa in questions:
        kept = na_probs[qa["id"]] <= thresh
        prediction = predictions[qa["id"]]
        if not qa["answers"]:
            total += 0.0 if kept and prediction else 1.0
        elif kept:
            golds = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])] or [""]
            total += max(score_one(prediction, gold) for gold in golds)
    return 100.0 * total / len(questions)


def assert_reproduces(ours: dict[str, Any], case: Case) -> None:
    """Every official number to 1e-9, the same keys in the same order; a threshold may
    differ only where it gives the same best score (checked by scoring at both)."""
    official = case.official
    assert list(ours) == list(official)
    for key, value in official.items():
        if not key.endswith("_thresh"):
            assert ours[key] == pytest.approx(value, rel=0, abs=1e-9), key
            # Not only close: the sums run in the script's order (see reader/metrics.py).
            assert ours[key] == value, key
    for metric in ("exact", "f1"):
        key = f"best_{metric}_thresh"
        if key not in official:
            continue
        best = official[f"best_{metric}"]
        probs = list(_read(case.na_probs).values()) if case.na_probs else []
        for thresh in {official[key], ours[key]}:
            assert probs.count(thresh) <= 1, f"{key} {thresh} is shared by several questions"
            at_thresh = _score_answering_up_to(case, thresh, metric)
            assert at_thresh == pytest.approx(best, rel=0, abs=1e-9), (key, thresh)


# --- the official scores -------------------------------------------------------------------


def test_official_scores_folder_is_complete(squad_dir: Path) -> None:
    """Guards the parametrized tests: a missing or emptied folder must not pass with no
    cases, nor may the cases named at collection differ from what the fixture's folder has."""
    folder = squad_dir / "official-scores"
    names = sorted(p.name for p in folder.glob("*.predictions.json"))
    assert len(names) == EXPECTED_PREDICTION_FILES, (folder, names)
    assert names == PREDICTION_FILES
    assert len(V1_PREDICTION_FILES) == 12
    for name in names:
        case = _case(squad_dir, name)
        assert case.data.is_file(), case.data
        assert (case.na_probs is not None) == case.stem.endswith(".messy"), case.stem
        assert "best_exact" in case.official or case.na_probs is None


@pytest.mark.parametrize("name", PREDICTION_FILES)
def test_score_files_reproduces_the_official_script(squad_dir: Path, name: str) -> None:
    case = _case(squad_dir, name)
    ours = score_files(case.data, case.predictions, case.na_probs)
    assert_reproduces(ours, case)
    # The same through squad_v2 on loaded objects, and what the CLI prints is plain JSON.
    na_probs = _read(case.na_probs) if case.na_probs else None
    assert squad_v2(_dataset(case.data), _read(case.predictions), na_probs) == ours
    assert json.loads(json.dumps(ours)) == ours


# Questions where the v1.1 script's exact match differs from v2.0's on v1.1 data: the
# prediction and one gold answer normalize to "" (v1.1 counts that a match; v2.0 drops such
# gold answers and compares with the others).
V1_EMPTY_GOLD_MATCHES = {"dev-v1.1.messy": ["57340d124776f419006617bf"]}


@pytest.mark.parametrize("name", V1_PREDICTION_FILES)
def test_squad_v1_reproduces_the_official_scores_on_v1_data(squad_dir: Path, name: str) -> None:
    case = _case(squad_dir, name)
    dataset = _dataset(case.data)
    predictions = _read(case.predictions)
    empty_gold_matches = []
    for qa in _questions(dataset):
        golds = [normalize_answer(a["text"]) for a in qa["answers"]]
        assert any(golds), qa["id"]  # else v1.1's F1 would differ too (0 against 1)
        if "" in golds and not normalize_answer(predictions.get(qa["id"], "x")):
            empty_gold_matches.append(qa["id"])
    assert empty_gold_matches == V1_EMPTY_GOLD_MATCHES.get(case.stem, [])

    ours = squad_v1(dataset, predictions)
    official = case.official
    extra = 100.0 * len(empty_gold_matches) / official["total"]
    assert list(ours) == ["exact_match", "f1"]
    assert ours["exact_match"] == pytest.approx(official["exact"] + extra, rel=0, abs=1e-9)
    assert ours["f1"] == pytest.approx(official["f1"], rel=0, abs=1e-9)
    assert official["total"] == official["HasAns_total"] == len(_questions(dataset))


def test_reader_score_command_prints_the_official_scores(squad_dir: Path) -> None:
    """`spanqa reader score DATA PRED --na-prob NA` in its own process, like a user runs it."""
    case = _case(squad_dir, "dev-v2.0.messy.predictions.json")
    assert case.na_probs is not None
    done = subprocess.run(
        [sys.executable, "-m", "spanqa.api.cli", "reader", "score",
         str(case.data), str(case.predictions), "--na-prob", str(case.na_probs)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_reproduces(json.loads(done.stdout), case)


# --- unit tests: normalization, empty strings, quirks --------------------------------------

# Lower-case, drop ASCII punctuation (string.punctuation), then drop the whole words a / an /
# the, then collapse whitespace (str.split: any Unicode whitespace).
NORMALIZED = {
    "": "",
    " ": "",
    "The": "",
    "a an the": "",
    "The Quick, brown fox!": "quick brown fox",
    "Theatre of the Absurd": "theatre of absurd",
    "another thesis, anthem": "another thesis anthem",
    "an apple a day": "apple day",
    "THE END": "end",
    "A.D. 1066": "ad 1066",
    "U.S.-based": "usbased",
    # Punctuation goes before the articles: "the.cat" is one word by then, "a_" is "a".
    "the.cat": "thecat",
    "the1 a_ b": "the1 b",
    "“quoted” — dash – and ‘single’": "“quoted” — dash – and ‘single’",
    "¿Qué? ¡Sí! «guillemets»": "¿qué ¡sí «guillemets»",
    "Café Müller, İstanbul, STRASSE ß": "café müller i\u0307stanbul strasse ß",
    "full-width，comma。stop": "fullwidth，comma。stop",
    "non\u00a0breaking\u2009thin space": "non breaking thin space",
    "tab\tnew\nline  end": "tab new line end",
    "3.14159": "314159",
    "北京大学": "北京大学",
    "...": "",
    "'the'": "",
    "(a)": "",
}


@pytest.mark.parametrize(("text", "expected"), NORMALIZED.items())
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_normalize_answer_examples() -> None:
    assert normalize_answer("The Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("Theatre") == "theatre"
    assert normalize_answer("U.S.-based") == "usbased"
    assert normalize_answer("A") == normalize_answer("...") == normalize_answer("") == ""
    # Only ASCII punctuation is removed, exactly as in the official scripts.
    assert normalize_answer("“Paris” – France") == "“paris” – france"


# (prediction, gold, exact, F1 with the v2.0 rule for empty answers)
PAIRS = [
    ("Paris", "paris", 1.0, 1.0),
    ("Cat,", "the cat", 1.0, 1.0),
    ("Denver Broncos", "broncos denver", 0.0, 1.0),  # F1 is over a bag of tokens
    ("the cat sat", "cat sat down", 0.0, 0.8),  # p 1, r 2/3
    ("cat cat", "cat", 0.0, 2 / 3),  # a token counts as often as both sides have it
    ("cat", "cat cat", 0.0, 2 / 3),
    ("dog sat on the mat", "the cat sat on a mat", 0.0, 0.75),
    ("a b c d", "c d e", 0.0, 2 / 3),
    ("1066 AD", "in 1066", 0.0, 0.5),
    ("“mat”", "mat", 0.0, 0.0),  # the curly quotes stay
    ("café", "cafe", 0.0, 0.0),
    ("", "", 1.0, 1.0),
    ("the", "...", 1.0, 1.0),  # both normalize to ""
    ("the the the", "a", 1.0, 1.0),
    ("", "Paris", 0.0, 0.0),
    ("Paris", "", 0.0, 0.0),
    ("an", "Paris", 0.0, 0.0),
]


@pytest.mark.parametrize(("prediction", "gold", "em", "f1_score"), PAIRS)
def test_exact_match_and_f1(prediction: str, gold: str, em: float, f1_score: float) -> None:
    assert exact_match(prediction, gold) == em
    assert f1(prediction, gold) == pytest.approx(f1_score, rel=0, abs=1e-12)
    assert isinstance(exact_match(prediction, gold), float)
    assert isinstance(f1(prediction, gold), float)


def test_empty_strings() -> None:
    assert exact_match("", "") == f1("", "") == 1.0
    assert exact_match("The", "") == f1("the.", "") == 1.0  # normalizes to ""
    assert exact_match("", "Paris") == f1("", "Paris") == 0.0
    assert exact_match("Paris", "") == f1("Paris", "") == 0.0
    assert f1("the cat sat", "cat sat down") == pytest.approx(0.8)
    assert f1("cat cat", "cat") == pytest.approx(2 / 3)


def _tiny(*golds: list[str]) -> Dataset:
    qas = [
        {"id": f"q{i}", "question": "?", "answers": [{"text": t, "answer_start": 0} for t in g]}
        for i, g in enumerate(golds)
    ]
    return [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]


def test_v1_and_v2_disagree_on_empty_answers_as_the_scripts_do() -> None:
    # Gold "The" normalizes to "": v1.1 keeps it (exact 1 but F1 0 against an empty
    # prediction), v2.0 drops it and treats the question as having no answer, so "" scores 1.
    dataset = _tiny(["The"], ["Paris", "the"], ["Paris"])
    preds = {"q0": "", "q1": "paris", "q2": ""}
    assert squad_v1(dataset, preds) == {
        "exact_match": pytest.approx(200 / 3),
        "f1": pytest.approx(100 / 3),
    }
    ours_v2 = squad_v2(dataset, preds)
    assert ours_v2 == {
        "exact": pytest.approx(200 / 3), "f1": pytest.approx(200 / 3), "total": 3,
        "HasAns_exact": pytest.approx(200 / 3), "HasAns_f1": pytest.approx(200 / 3),
        "HasAns_total": 3,
    }  # fmt: skip
    # A gold answer that normalizes to "" beside a real one: v1.1 matches "" with it, v2.0
    # compares with "paris" only (dev-v1.1.messy has one such question).
    dataset = _tiny(["Paris", "."])
    assert squad_v1(dataset, {"q0": "."}) == {"exact_match": 100.0, "f1": 0.0}
    assert squad_v2(dataset, {"q0": "."})["exact"] == 0.0


def test_squad_v2_key_order_and_groups() -> None:
    dataset = _tiny(["Paris"], [])
    preds = {"q0": "Paris", "q1": ""}
    assert list(squad_v2(dataset, preds, {"q0": 0.1, "q1": 0.9})) == [
        "exact", "f1", "total",
        "HasAns_exact", "HasAns_f1", "HasAns_total",
        "NoAns_exact", "NoAns_f1", "NoAns_total",
        "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh",
    ]  # fmt: skip
    no_answers_only = squad_v2(_tiny([]), {"q0": "x"})
    assert no_answers_only == {
        "exact": 0.0, "f1": 0.0, "total": 1, "NoAns_exact": 0.0, "NoAns_f1": 0.0, "NoAns_total": 1
    }  # fmt: skip


def test_missing_predictions_score_zero_in_v1_and_fail_in_v2() -> None:
    dataset = _tiny(["Paris"], ["Rome"])
    assert squad_v1(dataset, {"q0": "Paris"}) == {"exact_match": 50.0, "f1": 50.0}
    with pytest.raises(ValueError, match="no prediction"):
        squad_v2(dataset, {"q0": "Paris"})


def test_predictions_for_unknown_questions_are_ignored() -> None:
    dataset = _tiny(["Paris"], ["Rome"])
    preds = {"q0": "Paris", "q1": "Milan"}
    extra = {**preds, "not-in-dataset": "ignored"}
    assert squad_v1(dataset, extra) == squad_v1(dataset, preds) == {"exact_match": 50.0, "f1": 50.0}
    assert squad_v2(dataset, extra) == squad_v2(dataset, preds)
    assert squad_v2(dataset, preds)["total"] == 2


def test_na_probs_missing_a_question_fail() -> None:
    dataset = _tiny(["Paris"], [])
    preds = {"q0": "Paris", "q1": ""}
    with pytest.raises(ValueError, match="no na_prob"):
        squad_v2(dataset, preds, {"q1": 0.5})


def test_v1_on_unanswerable_questions_fails() -> None:
    with pytest.raises(ValueError, match="no gold answer"):
        squad_v1(_tiny(["Paris"], []), {"q0": "Paris", "q1": ""})


def test_empty_dataset_fails() -> None:
    with pytest.raises(ValueError, match="no questions"):
        squad_v1(_tiny(), {})
    with pytest.raises(ValueError, match="no questions"):
        squad_v2(_tiny(), {})


# q0 and q3 have answers, q1 and q2 do not. Raw scores (exact and F1 alike): q0 1, q1 1 ("the"
# normalizes to ""), q2 1, q3 0.
BEST_DATA = _tiny(["Paris"], [], [], ["Rome"])
BEST_PREDS = {"q0": "Paris", "q1": "the", "q2": "", "q3": "Milan"}


def _v2_scores(exact: float, has_exact: float, no_exact: float) -> dict[str, float]:
    return {
        "exact": exact, "f1": exact, "total": 4,
        "HasAns_exact": has_exact, "HasAns_f1": has_exact, "HasAns_total": 2,
        "NoAns_exact": no_exact, "NoAns_f1": no_exact, "NoAns_total": 2,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("na_probs", "best", "best_thresh"),
    [
        # Sweep by probability, starting from "answer nothing" (2 of 4): q0 +1 -> 3 (best, at
        # 0.1), q1 -1 (its raw answer "the" is non-empty), q2 0, q3 +0.
        ({"q0": 0.1, "q1": 0.2, "q2": 0.2, "q3": 0.9}, 75.0, 0.1),
        # All tied: the sort is stable, so na_probs' order decides. q3 +0, q2 0, q1 -1, q0 +1:
        # never above the start.
        ({"q3": 0.5, "q2": 0.5, "q1": 0.5, "q0": 0.5}, 50.0, 0.0),
        ({"q0": 0.5, "q1": 0.5, "q2": 0.5, "q3": 0.5}, 75.0, 0.5),
        # q2 0, (extra is no question: skipped), q1 -1, q3 +0, q0 +1: back to 2, not above it.
        # Counting "the" as the right no-answer would give 75 at 0.9.
        ({"q0": 0.9, "q1": 0.1, "q2": 0.0, "q3": 0.3, "extra": 0.05}, 50.0, 0.0),
    ],
)
def test_best_thresh_counts_raw_non_empty_predictions_as_answers(
    na_probs: dict[str, float], best: float, best_thresh: float
) -> None:
    ours = squad_v2(BEST_DATA, BEST_PREDS, na_probs)
    assert {k: v for k, v in ours.items() if k.startswith("best")} == {
        "best_exact": best, "best_exact_thresh": best_thresh,
        "best_f1": best, "best_f1_thresh": best_thresh,
    }  # fmt: skip
    # Thresholding itself scores the normalized strings: q1's "the" is a right no-answer.
    assert {k: v for k, v in ours.items() if not k.startswith("best")} == _v2_scores(75, 50, 100)


@pytest.mark.parametrize(
    ("na_probs", "thresh", "expected"),
    [
        # A question whose probability is above the threshold counts as answered "": right
        # for q1 / q2, wrong for q0 / q3.
        ({"q0": 0.1, "q1": 0.2, "q2": 0.2, "q3": 0.9}, 0.0, _v2_scores(50, 0, 100)),
        ({"q0": 0.1, "q1": 0.2, "q2": 0.2, "q3": 0.9}, 0.2, _v2_scores(75, 50, 100)),
        ({"q0": 0.9, "q1": 0.1, "q2": 0.0, "q3": 0.3}, 0.2, _v2_scores(50, 0, 100)),
        ({"q0": 0.5, "q1": 0.5, "q2": 0.5, "q3": 0.5}, 0.2, _v2_scores(50, 0, 100)),
        ({"q0": 0.5, "q1": 0.5, "q2": 0.5, "q3": 0.5}, 0.5, _v2_scores(75, 50, 100)),
        # Without na_probs every probability is 0.0: only a negative threshold bites.
        (None, 0.0, _v2_scores(75, 50, 100)),
        (None, -1.0, _v2_scores(50, 0, 100)),
    ],
)
def test_na_prob_thresh(
    na_probs: dict[str, float] | None, thresh: float, expected: dict[str, float]
) -> None:
    ours = squad_v2(BEST_DATA, BEST_PREDS, na_probs, na_prob_thresh=thresh)
    assert {k: v for k, v in ours.items() if not k.startswith("best")} == expected


def test_duplicate_gold_answers_and_max_over_golds() -> None:
    # q0: "broncos" equals the second gold. q1: [1066, ad] against "1066" is p 1/2, r 1 ->
    # 2/3; against "in 1066" p 1/2, r 1/2 -> 1/2; the best counts, duplicates do not add.
    dataset = _tiny(["Denver Broncos", "Broncos", "Denver Broncos"], ["1066", "in 1066"])
    preds = {"q0": "the Broncos", "q1": "1066 AD"}
    f1_expected = pytest.approx(100 * (1 + 2 / 3) / 2, rel=0, abs=1e-12)
    assert squad_v1(dataset, preds) == {"exact_match": 50.0, "f1": f1_expected}
    assert squad_v2(dataset, preds) == {
        "exact": 50.0, "f1": f1_expected, "total": 2,
        "HasAns_exact": 50.0, "HasAns_f1": f1_expected, "HasAns_total": 2,
    }  # fmt: skip
