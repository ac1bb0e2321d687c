"""Tests for reader.squad: real SQuAD files load cleanly, every malformation is reported precisely
and costs only its own record, offsets are repaired, and the hub path fails helpfully."""

import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from conftest import squad_file

from spanqa.reader.squad import (
    GoldAnswer,
    LoadReport,
    Problem,
    SquadExample,
    SquadFormatError,
    load_examples,
    load_hf_squad,
    load_squad,
    to_official_json,
)

CONTEXT = "Paris is the capital of France. The Seine flows through Paris."


# --------------------------------------------------------------------------- helpers


def qa(qid: str, answers: Any = None, **fields: Any) -> dict[str, Any]:
    """A valid question on CONTEXT unless the caller overrides fields."""
    if answers is None:
        answers = [{"text": "Paris", "answer_start": 0}]
    record = {"id": qid, "question": f"Question {qid}?", "answers": answers}
    record.update(fields)
    return record


def article(title: str, qas: list[Any], context: Any = CONTEXT) -> dict[str, Any]:
    return {"title": title, "paragraphs": [{"context": context, "qas": qas}]}


def write(tmp_path: Path, data: Any, version: str = "1.1", name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"version": version, "data": data}), encoding="utf-8")
    return path


def load_with_bad_article(
    tmp_path: Path, bad: dict[str, Any], version: str = "1.1"
) -> tuple[list[SquadExample], LoadReport]:
    """Load a file of one good article followed by `bad`."""
    return load_squad(write(tmp_path, [article("Good", [qa("good-1")]), bad], version))


def only_problem(report: LoadReport) -> Problem:
    assert len(report.problems) == 1, [str(p) for p in report.problems]
    return report.problems[0]


def question_count(path: Path) -> int:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return sum(len(p["qas"]) for a in data for p in a["paragraphs"])


# --------------------------------------------------------------------------- real data

REAL_FILES = [
    ("sample-v1.1.json", 29, "1.1"),
    ("sample-v2.0.json", 59, "2.0"),
    ("dev-v1.1.json", 1491, "1.1"),
    ("dev-v2.0.json", 2037, "2.0"),
]


@pytest.mark.parametrize(("name", "questions", "version"), REAL_FILES)
def test_real_files_load_completely_and_cleanly(name: str, questions: int, version: str) -> None:
    path = squad_file(name)
    examples, report = load_squad(path)

    assert report.problems == []
    assert (report.examples, report.skipped, report.repaired) == (questions, 0, 0)
    assert len(examples) == questions == question_count(path)
    assert report.version == version
    assert report.articles == len(json.loads(path.read_text(encoding="utf-8"))["data"])
    assert len({e.id for e in examples}) == questions
    for example in examples:
        assert example.is_impossible == (not example.answers)
        for answer in example.answers:
            assert example.context[answer.start : answer.start + len(answer.text)] == answer.text


def test_v2_files_hold_unanswerable_questions() -> None:
    examples, _ = load_squad(squad_file("dev-v2.0.json"))
    impossible = [e for e in examples if e.is_impossible]
    assert 0 < len(impossible) < len(examples)
    assert all(e.answers == [] for e in impossible)


def test_v1_train_style_keeps_every_answer(tmp_path: Path) -> None:
    answers = [{"text": "Paris", "answer_start": 0}, {"text": "Paris", "answer_start": 56}]
    examples, report = load_squad(
        write(tmp_path, [article("T", [qa("q1", answers)])]), for_training=True
    )
    assert examples[0].answers == [GoldAnswer("Paris", 0), GoldAnswer("Paris", 56)]
    assert report.problems == []


# --------------------------------------------------------------------------- malformations

RECORD_FAULTS = [
    pytest.param({"context": None}, "'context' must be a string, got null", id="null-context"),
    pytest.param({"context": 7}, "'context' must be a string, got number 7", id="int-context"),
    pytest.param({"context": ""}, "'context' is empty", id="empty-context"),
    pytest.param({"context": " \n\t"}, "'context' is whitespace only", id="blank-context"),
    pytest.param({"question": "   "}, "'question' is whitespace only", id="blank-question"),
    pytest.param({"question": ["x"]}, "'question' must be a string, got list", id="list-question"),
    pytest.param(
        {"answers": {"text": "Paris"}}, "'answers' must be a list, got object", id="answers-object"
    ),
    pytest.param(
        {"answers": [{"text": 3, "answer_start": 0}]},
        "answers[0]: 'text' must be a string, got number 3",
        id="int-text",
    ),
    pytest.param(
        {"answers": [{"answer_start": 0}]}, "answers[0]: missing 'text'", id="missing-text"
    ),
    pytest.param(
        {"answers": [{"text": "Paris", "answer_start": "0"}]},
        "answers[0]: 'answer_start' must be an integer, got string",
        id="str-start",
    ),
    pytest.param(
        {"answers": [{"text": "Paris", "answer_start": 0.0}]},
        "answers[0]: 'answer_start' must be an integer, got number 0.0",
        id="float-start",
    ),
    pytest.param(
        {"answers": [{"text": "Paris", "answer_start": True}]},
        "answers[0]: 'answer_start' must be an integer, got boolean",
        id="bool-start",
    ),
    pytest.param(
        {"answers": [{"text": "Paris"}]}, "answers[0]: missing 'answer_start'", id="missing-start"
    ),
    pytest.param(
        {"answers": ["Paris"]}, "answers[0] must be an object, got string", id="answer-string"
    ),
    pytest.param(
        {"answers": []},
        "no answers given, yet not marked is_impossible",
        id="answerable-without-answers",
    ),
    pytest.param(
        {"is_impossible": "no"},
        "'is_impossible' must be true or false, got string",
        id="str-impossible",
    ),
    pytest.param(
        {"is_impossible": True},
        "'is_impossible' is true but 1 answer(s) are given",
        id="impossible-answered",
    ),
    pytest.param(
        {"question": "Where?\ud800"},
        "invalid Unicode in question (lone surrogate U+D800 at character 6)",
        id="lone-surrogate",
    ),
]


@pytest.mark.parametrize(("fault", "message"), RECORD_FAULTS)
def test_record_fault_skips_only_that_question(
    tmp_path: Path, fault: dict[str, Any], message: str
) -> None:
    fields = dict(fault)
    context = fields.pop("context", CONTEXT)
    bad = {
        "title": "Bad",
        "paragraphs": [
            {"context": context, "qas": [qa("bad-1", **fields)]},
            {"context": CONTEXT, "qas": [qa("bad-2")]},
        ],
    }

    examples, report = load_with_bad_article(tmp_path, bad)

    assert [e.id for e in examples] == ["good-1", "bad-2"]
    assert (report.examples, report.skipped) == (2, 1)
    problem = only_problem(report)
    assert (problem.file, problem.title, problem.question_id) == (
        str(tmp_path / "bad.json"),
        "Bad",
        "bad-1",
    )
    text = str(problem)
    assert text.startswith(f"{tmp_path / 'bad.json'}: article 'Bad', question bad-1: ")
    assert message in text
    assert text.endswith("question skipped")


def test_missing_context_skips_every_question_of_the_paragraph_by_id(tmp_path: Path) -> None:
    bad = {"title": "Bad", "paragraphs": [{"qas": [qa("bad-1"), qa("bad-2")]}]}
    examples, report = load_with_bad_article(tmp_path, bad)

    assert [e.id for e in examples] == ["good-1"]
    assert report.skipped == 2
    assert [(p.title, p.question_id) for p in report.problems] == [
        ("Bad", "bad-1"),
        ("Bad", "bad-2"),
    ]
    assert all("missing 'context'" in p.message for p in report.problems)


def test_missing_title_skips_the_article_and_names_each_question(tmp_path: Path) -> None:
    bad = article("unused", [qa("bad-1")])
    del bad["title"]
    examples, report = load_with_bad_article(tmp_path, bad)

    assert [e.id for e in examples] == ["good-1"]
    problem = only_problem(report)
    assert (problem.title, problem.question_id) == (None, "bad-1")
    assert str(problem) == (
        f"{tmp_path / 'bad.json'}: question bad-1: missing 'title'; question skipped"
    )


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param(qa("x", id=None), "'id' must be a string, got null", id="null-id"),
        pytest.param({"question": "Q?", "answers": []}, "missing 'id'", id="missing-id"),
        pytest.param(qa("x", id=""), "'id' is empty", id="empty-id"),
        pytest.param("just text", "question must be an object, got string", id="not-object"),
    ],
)
def test_question_without_usable_id_is_located_by_path(
    tmp_path: Path, record: Any, message: str
) -> None:
    examples, report = load_with_bad_article(tmp_path, article("Bad", [qa("bad-0"), record]))

    assert [e.id for e in examples] == ["good-1", "bad-0"]
    problem = only_problem(report)
    assert (problem.title, problem.question_id) == ("Bad", None)
    assert message in problem.message
    assert "data[1].paragraphs[0].qas[1]" in problem.message


def test_numeric_id_is_named_in_the_problem(tmp_path: Path) -> None:
    _, report = load_with_bad_article(tmp_path, article("Bad", [qa("x", id=17)]))
    problem = only_problem(report)
    assert problem.question_id == "17"
    assert "'id' must be a string, got number 17" in problem.message


@pytest.mark.parametrize(
    ("bad", "title", "message"),
    [
        pytest.param({"title": "Bad"}, "Bad", "data[1]: missing 'paragraphs'", id="paragraphs"),
        pytest.param(
            {"title": "Bad", "paragraphs": {}},
            "Bad",
            "data[1]: 'paragraphs' must be a list, got object",
            id="paragraphs-type",
        ),
        pytest.param(
            {"title": "Bad", "paragraphs": [{"context": CONTEXT}]},
            "Bad",
            "data[1].paragraphs[0]: missing 'qas'",
            id="qas",
        ),
        pytest.param(
            {"title": "Bad", "paragraphs": [None]},
            "Bad",
            "data[1].paragraphs[0]: paragraph must be an object, got null",
            id="paragraph-type",
        ),
    ],
)
def test_structural_fault_costs_only_its_own_article(
    tmp_path: Path, bad: dict[str, Any], title: str, message: str
) -> None:
    examples, report = load_with_bad_article(tmp_path, bad)
    assert [e.id for e in examples] == ["good-1"]
    problem = only_problem(report)
    assert (problem.title, problem.question_id, problem.message) == (title, None, message)
    assert str(problem) == f"{tmp_path / 'bad.json'}: article '{title}': {message}"


def test_article_that_is_not_an_object(tmp_path: Path) -> None:
    examples, report = load_with_bad_article(tmp_path, ["not", "an", "article"])
    assert [e.id for e in examples] == ["good-1"]
    assert str(only_problem(report)) == (
        f"{tmp_path / 'bad.json'}: data[1]: article must be an object, got list"
    )


def test_duplicate_id_keeps_the_first(tmp_path: Path) -> None:
    bad = article("Bad", [qa("good-1", question="Again?"), qa("bad-2")])
    examples, report = load_with_bad_article(tmp_path, bad)

    assert [(e.id, e.title) for e in examples] == [("good-1", "Good"), ("bad-2", "Bad")]
    problem = only_problem(report)
    assert (problem.title, problem.question_id) == ("Bad", "good-1")
    assert "duplicate question id (already loaded from article 'Good')" in problem.message


def test_answer_not_in_context_is_dropped_but_others_kept(tmp_path: Path) -> None:
    answers = [{"text": "London", "answer_start": 0}, {"text": "Paris", "answer_start": 0}]
    examples, report = load_with_bad_article(tmp_path, article("Bad", [qa("bad-1", answers)]))

    assert examples[1].answers == [GoldAnswer("Paris", 0)]
    assert report.skipped == 0
    problem = only_problem(report)
    assert (problem.title, problem.question_id) == ("Bad", "bad-1")
    assert "answer 'London' does not occur in the context; dropped" in problem.message


@pytest.mark.parametrize("for_training", [False, True])
def test_answerable_question_with_no_valid_answer_is_skipped(
    tmp_path: Path, for_training: bool
) -> None:
    answers = [{"text": "London", "answer_start": 0}, {"text": "  ", "answer_start": 3}]
    path = write(
        tmp_path, [article("Good", [qa("good-1")]), article("Bad", [qa("bad-1", answers)])]
    )
    examples, report = load_squad(path, for_training=for_training)

    assert [e.id for e in examples] == ["good-1"]
    assert report.skipped == 1
    messages = [p.message for p in report.problems]
    assert "does not occur in the context; dropped" in messages[0]
    assert "answer text is empty; dropped" in messages[1]
    assert messages[2].startswith("answerable but no valid answer left")
    assert ("training" in messages[2]) == for_training


def test_impossible_question_ignores_plausible_answers(tmp_path: Path) -> None:
    record = qa(
        "imp", [], is_impossible=True, plausible_answers=[{"text": "Nowhere", "answer_start": 999}]
    )
    examples, report = load_squad(write(tmp_path, [article("T", [record])], version="v2.0"))
    assert examples == [SquadExample("imp", "T", CONTEXT, "Question imp?", [], True)]
    assert (report.version, report.problems) == ("2.0", [])


@pytest.mark.parametrize(
    ("version", "records", "expected"),
    [
        ("1.1", [qa("q")], "1.1"),
        ("v2.0", [qa("q")], "2.0"),
        ("1.1", [qa("q", is_impossible=False)], "2.0"),
    ],
)
def test_version_detection(tmp_path: Path, version: str, records: list[Any], expected: str) -> None:
    _, report = load_squad(write(tmp_path, [article("T", records)], version=version))
    assert report.version == expected


def test_wrong_version_type_is_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"version": 2, "data": [article("T", [qa("q")])]}))
    examples, report = load_squad(path)
    assert len(examples) == 1
    assert only_problem(report).message == "'version' must be a string, got number 2"


# --------------------------------------------------------------------------- whole-file errors


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"data": [\n  {"title": "T",}\n]}')
    with pytest.raises(
        SquadFormatError, match=r"broken\.json: not valid JSON: .* line 2, column 17"
    ):
        load_squad(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "top level must be an object with a 'data' list, got list"),
        ('{"version": "1.1"}', "top level has no 'data' list"),
        ('{"data": {"title": "T"}}', "'data' must be a list, got object"),
        ("", "not valid JSON"),
    ],
)
def test_unusable_top_level(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "top.json"
    path.write_text(content)
    with pytest.raises(SquadFormatError, match=r"top\.json: ") as excinfo:
        load_squad(path)
    assert message in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_utf16_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "utf16.json"
    path.write_text(json.dumps({"data": []}), encoding="utf-16")
    with pytest.raises(SquadFormatError, match="UTF-16"):
        load_squad(path)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"data": [article("T", [qa("q")])]}).encode())
    examples, report = load_squad(path)
    assert [e.id for e in examples] == ["q"]
    assert report.problems == []


# --------------------------------------------------------------------------- non-UTF-8 bytes


def _ascii_window(raw: bytes, context: str) -> tuple[int, int]:
    """(char end, file byte end) of a 30-char ASCII slice of `context` found once in `raw`."""
    for start in range(len(context) - 30):
        window = context[start : start + 30]
        if window.isascii() and not set(window) & set('"\\\n') and raw.count(window.encode()) == 1:
            return start + 30, raw.index(window.encode()) + 30
    raise AssertionError("no unique ASCII window in the context")


def test_non_utf8_bytes_skip_exactly_their_paragraph(tmp_path: Path) -> None:
    source = squad_file("sample-v1.1.json")
    raw = source.read_bytes()
    paragraph = json.loads(raw)["data"][1]["paragraphs"][1]
    char_end, byte_end = _ascii_window(raw, paragraph["context"])
    path = tmp_path / "sample-bad-bytes.json"
    path.write_bytes(raw[:byte_end] + b"\xff" + raw[byte_end:])

    examples, report = load_squad(path)

    poisoned = {q["id"] for q in paragraph["qas"]}
    clean, _ = load_squad(source)
    assert [e for e in clean if e.id not in poisoned] == examples
    assert (report.examples, report.skipped) == (29 - len(poisoned), len(poisoned))
    *record_problems, file_problem = report.problems
    assert {p.question_id for p in record_problems} == poisoned
    offset_in_context = len(paragraph["context"][:char_end].encode())
    for problem in record_problems:
        assert problem.file == str(path)
        assert problem.title == json.loads(raw)["data"][1]["title"]
        assert problem.message == (
            f"non-UTF-8 bytes in context (byte 0xFF at byte {offset_in_context} of the context)"
            "; question skipped"
        )
    assert (file_problem.title, file_problem.question_id) == (None, None)
    assert file_problem.message == (
        f"1 non-UTF-8 byte(s) at byte offset(s) {byte_end}; "
        f"{len(poisoned)} question(s) containing them skipped"
    )


def test_non_utf8_bytes_in_an_answer_skip_only_that_question(tmp_path: Path) -> None:
    body = json.dumps({"data": [article("T", [qa("q1"), qa("q2")])]}).encode()
    first_paris = body.index(b'"text": "Paris"') + len(b'"text": "Pa')
    path = tmp_path / "answer.json"
    path.write_bytes(body[:first_paris] + b"\xe9" + body[first_paris:])

    examples, report = load_squad(path)

    assert [e.id for e in examples] == ["q2"]
    assert report.problems[0].question_id == "q1"
    assert "answers[0]: non-UTF-8 bytes in answer text" in report.problems[0].message
    assert "1 question(s) containing them skipped" in report.problems[1].message


def test_non_utf8_title_is_printable_in_problems(tmp_path: Path) -> None:
    body = json.dumps({"data": [article("Caf_", [qa("q1")]), article("T", [qa("q2")])]}).encode()
    path = tmp_path / "title.json"
    path.write_bytes(body.replace(b"Caf_", b"Caf\xe9"))

    examples, report = load_squad(path)

    assert [e.id for e in examples] == ["q2"]
    assert report.problems[0].title == "Caf\\xe9"
    assert "non-UTF-8 bytes in title" in str(report.problems[0])


# --------------------------------------------------------------------------- repair, round trip


def test_wrong_answer_start_is_repaired_to_the_nearest_occurrence(tmp_path: Path) -> None:
    context = "Paris is big. Paris is old. Paris is here."
    answers = [
        {"text": "Paris", "answer_start": 12},  # nearest copy: 14
        {"text": "Paris", "answer_start": 26},  # 14 and 28: 28 is nearer
        {"text": "Paris", "answer_start": -3},  # before the start: first copy
        {"text": "Paris", "answer_start": 500},  # past the end: last copy
        {"text": "Paris", "answer_start": 7},  # tie between 0 and 14: the earlier
        {"text": "Paris", "answer_start": 28},  # already right
    ]
    examples, report = load_squad(write(tmp_path, [article("T", [qa("q", answers)], context)]))

    assert [a.start for a in examples[0].answers] == [14, 28, 0, 28, 0, 28]
    assert report.repaired == 5
    assert [p.message for p in report.problems] == [
        "answers[0]: answer 'Paris': answer_start 12 repaired to 14",
        "answers[1]: answer 'Paris': answer_start 26 repaired to 28",
        "answers[2]: answer 'Paris': answer_start -3 repaired to 0",
        "answers[3]: answer 'Paris': answer_start 500 repaired to 28",
        "answers[4]: answer 'Paris': answer_start 7 repaired to 0",
    ]
    assert all(p.question_id == "q" and p.title == "T" for p in report.problems)


@pytest.mark.parametrize(
    ("name", "version"), [("sample-v1.1.json", "1.1"), ("sample-v2.0.json", "2.0")]
)
def test_official_json_round_trip(tmp_path: Path, name: str, version: str) -> None:
    examples, _ = load_squad(squad_file(name))
    document = to_official_json(examples)
    out = tmp_path / name
    out.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")

    again, report = load_squad(out)

    assert again == examples
    assert (report.version, report.problems) == (version, [])
    original = json.loads(squad_file(name).read_text(encoding="utf-8"))
    assert [a["title"] for a in document["data"]] == [a["title"] for a in original["data"]]
    assert sum(len(a["paragraphs"]) for a in document["data"]) == sum(
        len(a["paragraphs"]) for a in original["data"]
    )
    assert document["version"] == ("v2.0" if version == "2.0" else "1.1")


def test_repaired_set_writes_back_clean(tmp_path: Path) -> None:
    answers = [{"text": "Seine", "answer_start": 3}]
    examples, report = load_squad(write(tmp_path, [article("T", [qa("q", answers)])]))
    assert report.repaired == 1
    out = tmp_path / "out.json"
    out.write_text(json.dumps(to_official_json(examples)))

    again, report = load_squad(out)
    assert again == examples
    assert (report.repaired, report.problems) == (0, [])


# --------------------------------------------------------------------------- report, logging


def test_problem_str_formats() -> None:
    assert str(Problem("f.json", "T", "q1", "bad")) == "f.json: article 'T', question q1: bad"
    assert str(Problem("f.json", "T", None, "bad")) == "f.json: article 'T': bad"
    assert str(Problem("f.json", None, "q1", "bad")) == "f.json: question q1: bad"
    assert str(Problem("f.json", None, None, "bad")) == "f.json: bad"


def test_summary_and_one_warning_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="spanqa.reader.squad")
    _, report = load_with_bad_article(tmp_path, article("Bad", [qa("bad-1", question="")]))

    assert report.summary() == (
        f"{tmp_path / 'bad.json'}: SQuAD 1.1, 2 articles, 1 examples loaded, "
        "1 questions skipped, 0 answer_start repaired, 1 problems"
    )
    assert len(caplog.records) == 1
    assert "\n" not in caplog.records[0].getMessage()
    assert "question bad-1" in caplog.records[0].getMessage()


def test_clean_load_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="spanqa.reader.squad")
    load_squad(squad_file("sample-v1.1.json"))
    assert caplog.records == []


# --------------------------------------------------------------------------- Hugging Face


def hf_row(qid: str, texts: list[Any], starts: list[Any], **fields: Any) -> dict[str, Any]:
    row = {
        "id": qid,
        "title": "T",
        "context": CONTEXT,
        "question": f"Question {qid}?",
        "answers": {"text": texts, "answer_start": starts},
    }
    row.update(fields)
    return row


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Install a stand-in `datasets` module; rows come from FAKE_ROWS, calls are recorded."""
    calls: list[tuple[str, str]] = []

    def load_dataset(name: str, split: str) -> list[dict[str, Any]]:
        calls.append((name, split))
        return FAKE_ROWS[name]

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


FAKE_ROWS: dict[str, list[dict[str, Any]]] = {
    "squad": [
        hf_row("a", ["Paris", "Paris"], [0, 56]),
        hf_row("b", ["France"], [3]),  # wrong offset: repaired to 24
        hf_row("c", ["Paris", "Seine"], [0]),  # columns do not line up
        hf_row("d", ["Paris"], [0], context="  "),  # same rule as for files
        hf_row("e", [], []),  # v1.1 has no unanswerable questions
    ],
    "squad_v2": [
        hf_row("a", ["Paris"], [0]),
        hf_row("n", [], [], title="U"),
    ],
}


def test_hf_rows_are_converted_and_validated_like_files(fake_hub: list[Any]) -> None:
    examples, report = load_hf_squad("squad", "validation")

    assert fake_hub == [("squad", "validation")]
    assert examples == [
        SquadExample(
            "a", "T", CONTEXT, "Question a?", [GoldAnswer("Paris", 0), GoldAnswer("Paris", 56)]
        ),
        SquadExample("b", "T", CONTEXT, "Question b?", [GoldAnswer("France", 24)]),
    ]
    assert (report.path, report.version, report.articles) == ("squad:validation", "1.1", 1)
    assert (report.examples, report.skipped, report.repaired) == (2, 3, 1)
    messages = {p.question_id: p.message for p in report.problems}
    assert messages["b"] == "answers[0]: answer 'France': answer_start 3 repaired to 24"
    assert messages["c"].startswith("'answers' has 2 texts but 1 answer_start values")
    assert messages["d"].startswith("'context' is whitespace only")
    assert messages["e"].startswith("no answers given, yet not marked is_impossible")
    assert all(p.file == "squad:validation" for p in report.problems)


def test_hf_v2_empty_answers_mean_unanswerable(fake_hub: list[Any]) -> None:
    examples, report = load_hf_squad("squad_v2", "validation")
    assert [(e.id, e.is_impossible, e.answers) for e in examples] == [
        ("a", False, [GoldAnswer("Paris", 0)]),
        ("n", True, []),
    ]
    assert (report.version, report.articles, report.problems) == ("2.0", 2, [])


def test_load_examples_routes_hub_names_and_files(fake_hub: list[Any], tmp_path: Path) -> None:
    load_examples("squad_v2:train")
    load_examples("squad")
    load_examples("squad_v2", split="train")
    assert fake_hub == [("squad_v2", "train"), ("squad", "validation"), ("squad_v2", "train")]

    sample = str(squad_file("sample-v1.1.json"))
    examples, report = load_examples(sample, for_training=True)
    assert (len(examples), report.path) == (29, sample)
    assert fake_hub == [("squad_v2", "train"), ("squad", "validation"), ("squad_v2", "train")]


def test_hf_without_datasets_package_says_use_a_local_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(RuntimeError, match="'datasets' package") as excinfo:
        load_examples("squad")
    assert "spanqa[hub]" in str(excinfo.value)
    assert "local SQuAD JSON file" in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, ImportError)


def test_unreachable_hub_says_use_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(name: str, split: str) -> None:
        raise ConnectionError("Couldn't reach 'squad' on the Hub")

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    with pytest.raises(RuntimeError, match="local SQuAD JSON file") as excinfo:
        load_hf_squad("squad", "validation")
    assert "ConnectionError: Couldn't reach" in str(excinfo.value)


def test_unknown_hub_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown SQuAD dataset 'natural_questions'"):
        load_hf_squad("natural_questions", "validation")
