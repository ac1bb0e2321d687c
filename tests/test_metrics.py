"""reader.metrics against the official SQuAD evaluation scripts (tests/reference/).

Both scripts are run on the shared SQuAD files with prediction sets that hit every branch
of the metrics: exact gold answers, near misses, random spans, empty and missing
predictions, normalization variants, and random no-answer probabilities with ties.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from reader.metrics import exact_match, f1, normalize_answer, score_files, squad_v1, squad_v2

SQUAD = Path(__file__).resolve().parents[1].parent / "shared" / "squad"
REFERENCE = Path(__file__).resolve().parent / "reference"


def _load_reference(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"squad_reference_{name}", REFERENCE / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REF_V1 = _load_reference("evaluate_v1_1.py")
REF_V2 = _load_reference("evaluate_v2_0.py")

Dataset = list[dict[str, Any]]


@functools.cache
def _load(name: str) -> Dataset:
    path = SQUAD / name
    if not path.exists():
        pytest.skip(f"shared SQuAD file {path} is not there")
    return json.loads(path.read_text(encoding="utf-8"))["data"]


def official_v2(
    dataset: Dataset,
    preds: dict[str, str],
    na_probs: dict[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, Any]:
    """The official v2.0 `main()` minus argparse and file I/O, statement for statement."""
    ev = REF_V2
    probs = na_probs if na_probs is not None else {k: 0.0 for k in preds}
    qid_to_has_ans = ev.make_qid_to_has_ans(dataset)
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = ev.get_raw_scores(dataset, preds)
    exact_thresh = ev.apply_no_ans_threshold(exact_raw, probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = ev.apply_no_ans_threshold(f1_raw, probs, qid_to_has_ans, na_prob_thresh)
    out_eval = ev.make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        has_ans_eval = ev.make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids)
        ev.merge_eval(out_eval, has_ans_eval, "HasAns")
    if no_ans_qids:
        no_ans_eval = ev.make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids)
        ev.merge_eval(out_eval, no_ans_eval, "NoAns")
    if na_probs is not None:
        ev.find_all_best_thresh(out_eval, preds, exact_raw, f1_raw, probs, qid_to_has_ans)
    return out_eval


def assert_same(ours: dict[str, Any], official: dict[str, Any]) -> None:
    assert list(ours) == list(official)
    for key, value in official.items():
        assert ours[key] == pytest.approx(value, rel=0, abs=1e-9), key
    # Not only close: the sums run in the scripts' order, so the floats are identical.
    assert ours == dict(official)


# --- prediction sets -----------------------------------------------------------------------


def _questions(dataset: Dataset) -> list[tuple[str, dict[str, Any]]]:
    return [(p["context"], qa) for a in dataset for p in a["paragraphs"] for qa in p["qas"]]


def _first_gold(qa: dict[str, Any]) -> str:
    return qa["answers"][0]["text"] if qa["answers"] else ""


def _random_span(context: str, rng: random.Random) -> str:
    words = context.split()
    start = rng.randrange(len(words))
    return " ".join(words[start : start + rng.randint(1, 8)])


def gold(dataset: Dataset, rng: random.Random) -> dict[str, str]:
    return {qa["id"]: _first_gold(qa) for _, qa in _questions(dataset)}


def truncated(dataset: Dataset, rng: random.Random) -> dict[str, str]:
    """The first gold answer minus its last word ("" for one-word answers)."""
    return {qa["id"]: " ".join(_first_gold(qa).split()[:-1]) for _, qa in _questions(dataset)}


def extended(dataset: Dataset, rng: random.Random) -> dict[str, str]:
    """The first gold answer plus the next word of the context; a context word if no gold."""
    preds = {}
    for context, qa in _questions(dataset):
        if not qa["answers"]:
            preds[qa["id"]] = _random_span(context, rng)
            continue
        answer = qa["answers"][0]
        end = answer["answer_start"] + len(answer["text"])
        following = context[end:].split()
        preds[qa["id"]] = answer["text"] + (" " + following[0] if following else " extra")
    return preds


def random_spans(dataset: Dataset, rng: random.Random) -> dict[str, str]:
    return {qa["id"]: _random_span(context, rng) for context, qa in _questions(dataset)}


def _variant(text: str, context: str, other: str, rng: random.Random) -> str:
    choices = [
        text,
        text.upper(),
        "The " + text,
        "an " + text.lower() + ".",
        f"“{text}”",
        f"({text})!",
        "  " + text.replace(" ", "   ") + "\t",
        text + " the",
        "",
        "the",
        "...",
        _random_span(context, rng),
        other,
    ]
    return rng.choice(choices)


def variants(dataset: Dataset, rng: random.Random) -> dict[str, str]:
    """Gold answers with case, article, punctuation, whitespace and Unicode-quote changes,
    mixed with empty / article-only / punctuation-only answers, spans and wrong answers."""
    questions = _questions(dataset)
    golds = [_first_gold(qa) or "nothing" for _, qa in questions]
    return {
        qa["id"]: _variant(_first_gold(qa), context, rng.choice(golds), rng)
        for context, qa in questions
    }


def with_missing(dataset: Dataset, rng: random.Random) -> dict[str, str]:
    """`variants` with about a fifth of the questions unanswered (v1.1 scores them 0)."""
    return {qid: text for qid, text in variants(dataset, rng).items() if rng.random() > 0.2}


def random_na_probs(
    dataset: Dataset, preds: dict[str, str], rng: random.Random
) -> dict[str, float]:
    """Seeded no-answer probabilities, skewed high for unanswerable questions so that the
    best threshold lands inside (0, 1); half are rounded to one decimal so that many tie."""
    unanswerable = {qa["id"] for _, qa in _questions(dataset) if not qa["answers"]}
    probs = {}
    for qid in sorted(preds, key=lambda _: rng.random()):  # not in dataset order
        value = rng.random() ** (0.5 if qid in unanswerable else 2.0)
        probs[qid] = round(value, 1) if rng.random() < 0.5 else value
    return probs


PREDICTION_SETS: dict[str, Callable[[Dataset, random.Random], dict[str, str]]] = {
    "gold": gold,
    "truncated": truncated,
    "extended": extended,
    "random_spans": random_spans,
    "variants": variants,
}
SAMPLE_FILES = ["sample-v2.0.json", "sample-v1.1.json"]


# --- against the official scripts on real data ---------------------------------------------


ALL_SETS = {**PREDICTION_SETS, "with_missing": with_missing}
# Every prediction set on the small files; the most varied ones on the dev files (1.5k-2k
# questions each), which keeps the module at a few seconds on two cores.
V1_CASES = [
    *[("sample-v1.1.json", kind) for kind in ALL_SETS],
    ("dev-v1.1.json", "variants"),
    ("dev-v1.1.json", "with_missing"),
]
V2_CASES = [
    *[(name, kind, na) for name in SAMPLE_FILES for kind in PREDICTION_SETS for na in (0, 1)],
    ("dev-v2.0.json", "variants", 0),
    ("dev-v2.0.json", "variants", 1),
    ("dev-v2.0.json", "extended", 1),
    ("dev-v1.1.json", "random_spans", 1),
]


@pytest.mark.parametrize(("name", "kind"), V1_CASES)
def test_squad_v1_matches_official(name: str, kind: str) -> None:
    dataset = _load(name)
    preds = ALL_SETS[kind](dataset, random.Random(f"v1-{name}-{kind}"))
    official = REF_V1.evaluate(dataset, preds)
    assert_same(squad_v1(dataset, preds), official)
    if kind == "gold":
        assert official == {"exact_match": 100.0, "f1": 100.0}


@pytest.mark.parametrize(("name", "kind", "with_na_probs"), V2_CASES)
def test_squad_v2_matches_official(name: str, kind: str, with_na_probs: int) -> None:
    dataset = _load(name)
    rng = random.Random(f"v2-{name}-{kind}")
    preds = PREDICTION_SETS[kind](dataset, rng)
    na_probs = random_na_probs(dataset, preds, rng) if with_na_probs else None
    official = official_v2(dataset, preds, na_probs)
    assert_same(squad_v2(dataset, preds, na_probs), official)
    if kind == "gold":
        assert official["exact"] == official["f1"] == 100.0


@pytest.mark.parametrize(
    ("name", "thresh"),
    [*[("sample-v2.0.json", t) for t in (-1.0, 0.0, 0.3, 0.5, 1.0)], ("dev-v2.0.json", 0.5)],
)
def test_squad_v2_thresholds_match_official(name: str, thresh: float) -> None:
    dataset = _load(name)
    rng = random.Random(f"thresh-{name}-{thresh}")
    preds = variants(dataset, rng)
    preds["not-in-dataset"] = "ignored"  # the script ignores predictions for unknown ids
    na_probs = random_na_probs(dataset, preds, rng)
    assert_same(
        squad_v2(dataset, preds, na_probs, na_prob_thresh=thresh),
        official_v2(dataset, preds, na_probs, na_prob_thresh=thresh),
    )
    # Without na_probs every probability is 0.0, so only a negative threshold bites.
    assert_same(
        squad_v2(dataset, preds, na_prob_thresh=thresh),
        official_v2(dataset, preds, na_prob_thresh=thresh),
    )


def test_squad_v2_key_order() -> None:
    dataset = _load("sample-v2.0.json")
    preds = gold(dataset, random.Random(0))
    na_probs = random_na_probs(dataset, preds, random.Random(1))
    assert list(squad_v2(dataset, preds, na_probs)) == [
        "exact", "f1", "total",
        "HasAns_exact", "HasAns_f1", "HasAns_total",
        "NoAns_exact", "NoAns_f1", "NoAns_total",
        "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh",
    ]  # fmt: skip
    v1_data = _load("sample-v1.1.json")
    v1_keys = list(squad_v2(v1_data, gold(v1_data, random.Random(0))))
    assert v1_keys == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total"]


def test_missing_predictions_fail_in_v2_like_the_official_script() -> None:
    dataset = _load("sample-v2.0.json")
    preds = with_missing(dataset, random.Random(3))
    with pytest.raises(KeyError):
        official_v2(dataset, preds)
    with pytest.raises(ValueError, match="no prediction"):
        squad_v2(dataset, preds)


def test_na_probs_missing_a_question_fail() -> None:
    dataset = _load("sample-v2.0.json")
    preds = gold(dataset, random.Random(0))
    na_probs = dict.fromkeys(list(preds)[1:], 0.5)
    with pytest.raises(KeyError):
        official_v2(dataset, preds, na_probs)
    with pytest.raises(ValueError, match="no na_prob"):
        squad_v2(dataset, preds, na_probs)


def test_v1_on_unanswerable_questions_fails_like_the_official_script() -> None:
    dataset = _load("sample-v2.0.json")
    preds = gold(dataset, random.Random(0))
    with pytest.raises(ValueError):
        REF_V1.evaluate(dataset, preds)
    with pytest.raises(ValueError, match="no gold answer"):
        squad_v1(dataset, preds)


# --- score_files and the official command line ---------------------------------------------


def _write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _run_official(script: str, *args: str | Path) -> str:
    """Run an official script as its authors meant it: a separate process, stdout back."""
    done = subprocess.run(
        [sys.executable, str(REFERENCE / script), *map(str, args)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout


def test_score_files_matches_official_command(tmp_path: Path) -> None:
    data = SQUAD / "sample-v2.0.json"
    dataset = _load("sample-v2.0.json")
    rng = random.Random("files")
    preds = variants(dataset, rng)
    pred_path = _write(tmp_path / "predictions.json", preds)
    na_path = _write(tmp_path / "null_odds.json", random_na_probs(dataset, preds, rng))
    out_path = tmp_path / "eval.json"

    _run_official("evaluate_v2_0.py", data, pred_path, "-n", na_path, "-o", out_path)
    ours = score_files(data, pred_path, na_path)
    assert_same(ours, json.loads(out_path.read_text(encoding="utf-8")))
    assert json.loads(json.dumps(ours)) == ours  # the CLI prints it as JSON
    stdout = _run_official("evaluate_v2_0.py", data, pred_path, "-n", na_path, "-t", "0.5")
    assert_same(score_files(data, pred_path, na_path, na_prob_thresh=0.5), json.loads(stdout))
    assert_same(score_files(str(data), str(pred_path)), official_v2(dataset, preds))


def test_score_files_on_v1_data(tmp_path: Path) -> None:
    data = SQUAD / "sample-v1.1.json"
    dataset = _load("sample-v1.1.json")
    preds = variants(dataset, random.Random("v1-files"))
    pred_path = _write(tmp_path / "predictions.json", preds)

    ours = score_files(data, pred_path)
    assert_same(ours, json.loads(_run_official("evaluate_v2_0.py", data, pred_path)))
    assert ours["total"] == ours["HasAns_total"] == len(preds)
    official_v1 = json.loads(_run_official("evaluate_v1_1.py", data, pred_path))
    assert_same(squad_v1(dataset, preds), official_v1)


# --- unit tests: normalization, empty strings, quirks --------------------------------------

STRINGS = [
    "",
    " ",
    "The",
    "a an the",
    "The Quick, brown fox!",
    "Theatre of the Absurd",
    "an apple a day",
    "A.D. 1066",
    "U.S.-based",
    "“quoted” — dash – and ‘single’",
    "¿Qué? ¡Sí! «guillemets»",
    "Café Müller, İstanbul, STRASSE ß",
    "full-width，comma。stop",
    "non\u00a0breaking\u2009thin space",
    "tab\tnew\nline",
    "3.14159",
    "北京大学",
    "...",
    "'the'",
]


@pytest.mark.parametrize("text", STRINGS)
def test_normalize_answer_matches_both_scripts(text: str) -> None:
    assert normalize_answer(text) == REF_V2.normalize_answer(text)
    assert normalize_answer(text) == REF_V1.normalize_answer(text)


def test_normalize_answer_examples() -> None:
    assert normalize_answer("The Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("Theatre") == "theatre"
    assert normalize_answer("U.S.-based") == "usbased"
    assert normalize_answer("A") == normalize_answer("...") == normalize_answer("") == ""
    # Only ASCII punctuation is removed, exactly as in the official scripts.
    assert normalize_answer("“Paris” – France") == "“paris” – france"


def test_exact_match_and_f1_match_v2_script_pairwise() -> None:
    rng = random.Random(7)
    pairs = [(a, b) for a in STRINGS for b in STRINGS]
    words = ["the", "a", "cat", "dog", "Cat,", "sat", "on", "mat", "“mat”", "1066", "café"]
    for _ in range(300):
        pairs.append(tuple(" ".join(rng.choices(words, k=rng.randint(0, 5))) for _ in "pg"))
    for prediction, gold_text in pairs:
        assert exact_match(prediction, gold_text) == REF_V2.compute_exact(gold_text, prediction)
        assert f1(prediction, gold_text) == REF_V2.compute_f1(gold_text, prediction)
        assert isinstance(exact_match(prediction, gold_text), float)
        assert isinstance(f1(prediction, gold_text), float)


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
    # Gold "The" normalizes to "": v1.1 keeps it (F1 0 against anything), v2.0 drops it and
    # treats the question as having no answer, so "" scores 1.
    dataset = _tiny(["The"], ["Paris", "the"], ["Paris"])
    preds = {"q0": "", "q1": "paris", "q2": ""}
    ours_v1 = squad_v1(dataset, preds)
    assert_same(ours_v1, REF_V1.evaluate(dataset, preds))
    assert ours_v1 == {"exact_match": pytest.approx(200 / 3), "f1": pytest.approx(100 / 3)}
    ours_v2 = squad_v2(dataset, preds)
    assert_same(ours_v2, official_v2(dataset, preds))
    assert ours_v2["exact"] == ours_v2["f1"] == pytest.approx(200 / 3)
    assert ours_v2["HasAns_total"] == 3 and "NoAns_total" not in ours_v2


def test_best_thresh_counts_raw_non_empty_predictions_as_answers() -> None:
    # "the" normalizes to "" and scores exact 1 on an unanswerable question, yet the
    # official threshold search charges it as an answer because the raw string is non-empty.
    dataset = _tiny(["Paris"], [], [], ["Rome"])
    preds = {"q0": "Paris", "q1": "the", "q2": "", "q3": "Milan"}
    for na_probs in (
        {"q0": 0.1, "q1": 0.2, "q2": 0.2, "q3": 0.9},
        {"q3": 0.5, "q2": 0.5, "q1": 0.5, "q0": 0.5},  # all tied: na_probs order decides
        {"q0": 0.9, "q1": 0.1, "q2": 0.0, "q3": 0.3, "extra": 0.05},
    ):
        for thresh in (0.0, 0.2, 1.0):
            assert_same(
                squad_v2(dataset, preds, na_probs, thresh),
                official_v2(dataset, preds, na_probs, thresh),
            )
    assert squad_v2(dataset, preds)["NoAns_exact"] == 100.0


def test_duplicate_gold_answers_and_max_over_golds() -> None:
    dataset = _tiny(["Denver Broncos", "Broncos", "Denver Broncos"], ["1066", "in 1066"])
    preds = {"q0": "the Broncos", "q1": "1066 AD"}
    assert_same(squad_v1(dataset, preds), REF_V1.evaluate(dataset, preds))
    assert_same(squad_v2(dataset, preds), official_v2(dataset, preds))
    assert squad_v1(dataset, preds)["exact_match"] == 50.0
