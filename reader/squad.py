"""Read SQuAD v1.1 / v2.0 data, validate every record, and report each problem precisely.

Why this module is strict but forgiving: a reader trained or scored on silently broken records
gives numbers nobody can trust, yet one bad record must not cost the other thousands. So a file
is refused as a whole only when it is unusable as a whole (not JSON, no ``data`` list); every
other fault skips or repairs the smallest unit it touches (an answer, a question) and leaves a
`Problem` that names the file, the article, the question id and what is wrong.

The same per-question validation serves local JSON files and Hugging Face rows: HF rows are
rewritten into the official record shape first, so both sources obey exactly one set of rules.
"""

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "GoldAnswer",
    "LoadReport",
    "Problem",
    "SquadExample",
    "SquadFormatError",
    "load_examples",
    "load_hf_squad",
    "load_squad",
    "to_official_json",
]

logger = logging.getLogger(__name__)

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Characters that `errors="surrogateescape"` uses to carry undecodable bytes 0x80-0xFF.
_ESCAPED_BYTES = range(0xDC80, 0xDD00)
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
# Hugging Face dataset names we know, with the SQuAD version each one holds.
_HUB_VERSIONS = {
    "squad": "1.1",
    "rajpurkar/squad": "1.1",
    "squad_v2": "2.0",
    "rajpurkar/squad_v2": "2.0",
}
_MISSING = object()  # tells "field absent" apart from an explicit JSON null
_SHOWN_OFFSETS = 5  # how many bad-byte offsets the file-level problem lists
_BAD_BYTES = "non-UTF-8 bytes"  # wording shared by record problems and the byte counter


@dataclass(frozen=True)
class GoldAnswer:
    """One reference answer; `start` is a character offset, so that
    ``context[start:start + len(text)] == text`` always holds for loaded data."""

    text: str
    start: int


@dataclass
class SquadExample:
    """One question with its paragraph; `answers` is empty exactly when it is unanswerable."""

    id: str
    title: str
    context: str
    question: str
    answers: list[GoldAnswer]
    is_impossible: bool = False


@dataclass(frozen=True)
class Problem:
    """One fault found while loading; `title` / `question_id` are None when not known."""

    file: str
    title: str | None
    question_id: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.title is not None:
            where.append(f"article '{self.title}'")
        if self.question_id is not None:
            where.append(f"question {self.question_id}")
        if not where:
            return f"{self.file}: {self.message}"
        return f"{self.file}: {', '.join(where)}: {self.message}"


@dataclass
class LoadReport:
    """What a load did, so callers can log it, assert on it or refuse to go on."""

    path: str
    version: str
    articles: int
    examples: int
    skipped: int
    repaired: int
    problems: list[Problem]

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"{self.path}: SQuAD {self.version}, {self.articles} articles, "
            f"{self.examples} examples loaded, {self.skipped} questions skipped, "
            f"{self.repaired} answer_start repaired, {len(self.problems)} problems"
        )


class SquadFormatError(ValueError):
    """The whole file is unusable (not JSON, or no top-level ``data`` list)."""


# --------------------------------------------------------------------------- public API


def load_squad(
    path: str | Path, *, for_training: bool = False
) -> tuple[list[SquadExample], LoadReport]:
    """Load a SQuAD v1.1 / v2.0 JSON file, skipping and reporting bad records.

    Raises `SquadFormatError` only when nothing in the file can be trusted, and lets
    `OSError` (missing file, no permission) through unchanged.
    """
    path = Path(path)
    text, bad_byte_offsets = _read_text(path)
    data, declared_version = _top_level(_parse_json(text, path), path)
    collector = _Collector(str(path), for_training)
    examples = [
        example
        for index, article in enumerate(data)
        for example in _article_examples(article, f"data[{index}]", collector)
    ]
    if bad_byte_offsets:
        collector.problem(None, None, _bad_bytes_summary(bad_byte_offsets, collector))
    if isinstance(declared_version, str):
        version = _version(declared_version, collector.saw_is_impossible)
    else:
        if declared_version is not _MISSING:
            collector.problem(
                None, None, f"'version' must be a string, got {_json_type(declared_version)}"
            )
        version = _version("", collector.saw_is_impossible)
    return examples, collector.report(version, articles=len(data), examples=len(examples))


def load_hf_squad(
    name: str, split: str, *, for_training: bool = False
) -> tuple[list[SquadExample], LoadReport]:
    """Load ``squad`` / ``squad_v2`` from the Hugging Face hub, validated like a local file.

    `datasets` is optional (``pip install spanqa[hub]``) and imported only here, so the
    offline install never needs it.
    """
    version = _HUB_VERSIONS.get(name)
    if version is None:
        known = ", ".join(sorted(_HUB_VERSIONS))
        raise ValueError(f"unknown SQuAD dataset {name!r}; expected one of: {known}")
    rows = _fetch_hub_rows(name, split)
    collector = _Collector(f"{name}:{split}", for_training)
    examples: list[SquadExample] = []
    titles: set[str] = set()
    for index, row in enumerate(rows):
        example = _hf_row_example(row, f"row {index}", version == "2.0", collector)
        if example is not None:
            examples.append(example)
        if isinstance(row, Mapping) and isinstance(row.get("title"), str):
            titles.add(row["title"])
    return examples, collector.report(version, articles=len(titles), examples=len(examples))


def load_examples(
    source: str, split: str = "validation", for_training: bool = False
) -> tuple[list[SquadExample], LoadReport]:
    """Load from ``squad`` / ``squad_v2`` (optionally ``squad_v2:train``) or a JSON file path.

    A hub name's own ``:split`` suffix wins over `split`; `split` is ignored for files, whose
    split is whatever the file holds.
    """
    name, _, hub_split = source.partition(":")
    if name in _HUB_VERSIONS:
        return load_hf_squad(name, hub_split or split, for_training=for_training)
    return load_squad(source, for_training=for_training)


def to_official_json(examples: Iterable[SquadExample]) -> dict[str, Any]:
    """Rebuild the official ``{"version", "data"}`` layout, grouping by title, then context.

    Why: so a loaded (and repaired, filtered) set can be written back and scored by the
    official evaluation scripts. Articles and paragraphs keep first-seen order, so a file
    loaded, written and loaded again gives equal examples.
    """
    examples = list(examples)
    v2 = any(example.is_impossible for example in examples)
    articles: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for example in examples:
        paragraphs = articles.setdefault(example.title, {})
        paragraphs.setdefault(example.context, []).append(_official_qa(example, v2))
    data = [
        {
            "title": title,
            "paragraphs": [{"context": c, "qas": qas} for c, qas in paragraphs.items()],
        }
        for title, paragraphs in articles.items()
    ]
    # The official files spell the versions this way; the v1.1 scorer checks for "1.1".
    return {"version": "v2.0" if v2 else "1.1", "data": data}


# --------------------------------------------------------------------------- collecting


@dataclass
class _Collector:
    """State of one load: problems, counters and the ids already loaded."""

    file: str
    for_training: bool
    problems: list[Problem] = field(default_factory=list)
    loaded_ids: dict[str, str] = field(default_factory=dict)  # id -> title it came from
    skipped: int = 0
    repaired: int = 0
    skipped_for_bad_bytes: int = 0
    saw_is_impossible: bool = False

    def problem(self, title: object, question_id: object, message: str) -> None:
        """Record a problem; title and id are made printable, since they may hold bad bytes."""
        self.problems.append(
            Problem(self.file, _printable(title), _printable(question_id), message)
        )

    def skip(self, title: object, question_id: object, reason: str) -> None:
        """Drop one question and say why."""
        self.skipped += 1
        if _BAD_BYTES in reason:
            self.skipped_for_bad_bytes += 1
        self.problem(title, question_id, f"{reason}; question skipped")

    def report(self, version: str, *, articles: int, examples: int) -> LoadReport:
        """Freeze the counters into a report and log one warning line if anything was wrong."""
        report = LoadReport(
            path=self.file,
            version=version,
            articles=articles,
            examples=examples,
            skipped=self.skipped,
            repaired=self.repaired,
            problems=self.problems,
        )
        if report.problems:
            logger.warning("%s (first: %s)", report.summary(), report.problems[0])
        return report


# --------------------------------------------------------------------------- file level


def _read_text(path: Path) -> tuple[str, list[int]]:
    """Decode the file without ever failing on bad bytes.

    Undecodable bytes become lone surrogates (``surrogateescape``) so that only the records
    containing them are lost; their byte offsets are returned for the file-level problem.
    """
    raw = path.read_bytes()
    if raw.startswith(_UTF16_BOMS):
        raise SquadFormatError(f"{path}: file is UTF-16 encoded; SQuAD files are UTF-8")
    bom = len(_UTF8_BOM) if raw.startswith(_UTF8_BOM) else 0
    text = raw[bom:].decode("utf-8", errors="surrogateescape")
    return text, _escaped_byte_offsets(text, base=bom)


def _escaped_byte_offsets(text: str, *, base: int) -> list[int]:
    """File byte offsets of every undecodable byte carried in `text` (empty for clean files)."""
    if _first_invalid_char(text) is None:
        return []
    offsets: list[int] = []
    byte_pos, char_pos = base, 0
    for match in _ESCAPED_BYTE.finditer(text):
        byte_pos += len(text[char_pos : match.start()].encode("utf-8"))
        offsets.append(byte_pos)
        byte_pos, char_pos = byte_pos + 1, match.end()
    return offsets


def _parse_json(text: str, path: Path) -> object:
    """Parse JSON, turning a syntax error into a `SquadFormatError` with line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SquadFormatError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc


def _top_level(document: object, path: Path) -> tuple[list[object], object]:
    """The ``data`` list and the declared ``version`` (or `_MISSING`) of a parsed file."""
    if not isinstance(document, dict):
        raise SquadFormatError(
            f"{path}: top level must be an object with a 'data' list, got {_json_type(document)}"
        )
    data = document.get("data", _MISSING)
    if data is _MISSING:
        raise SquadFormatError(f"{path}: top level has no 'data' list")
    if not isinstance(data, list):
        raise SquadFormatError(f"{path}: 'data' must be a list, got {_json_type(data)}")
    return data, document.get("version", _MISSING)


def _version(declared: str, saw_is_impossible: bool) -> str:
    """Say "2.0" when the file says so or any question carries ``is_impossible``, else "1.1"."""
    if saw_is_impossible or declared.lstrip("vV").startswith("2"):
        return "2.0"
    return "1.1"


def _bad_bytes_summary(offsets: list[int], collector: _Collector) -> str:
    """The once-per-file line about undecodable bytes: how many, where, and what they cost."""
    shown = ", ".join(str(offset) for offset in offsets[:_SHOWN_OFFSETS])
    more = ", ..." if len(offsets) > _SHOWN_OFFSETS else ""
    return (
        f"{len(offsets)} non-UTF-8 byte(s) at byte offset(s) {shown}{more}; "
        f"{collector.skipped_for_bad_bytes} question(s) containing them skipped"
    )


# --------------------------------------------------------------------------- structure


def _article_examples(article: object, where: str, collector: _Collector) -> Iterator[SquadExample]:
    """Examples of one article; a broken article never affects the others."""
    if not isinstance(article, dict):
        collector.problem(
            None, None, f"{where}: article must be an object, got {_json_type(article)}"
        )
        return
    title = article.get("title", _MISSING)
    paragraphs = article.get("paragraphs", _MISSING)
    if not isinstance(paragraphs, list):
        collector.problem(title, None, f"{where}: {_list_fault(paragraphs, 'paragraphs')}")
        return
    for index, paragraph in enumerate(paragraphs):
        yield from _paragraph_examples(paragraph, f"{where}.paragraphs[{index}]", title, collector)


def _paragraph_examples(
    paragraph: object, where: str, title: object, collector: _Collector
) -> Iterator[SquadExample]:
    """Examples of one paragraph; a bad title or context skips each question under its id."""
    if not isinstance(paragraph, dict):
        collector.problem(
            title, None, f"{where}: paragraph must be an object, got {_json_type(paragraph)}"
        )
        return
    qas = paragraph.get("qas", _MISSING)
    if not isinstance(qas, list):
        collector.problem(title, None, f"{where}: {_list_fault(qas, 'qas')}")
        return
    context = paragraph.get("context", _MISSING)
    for index, record in enumerate(qas):
        example = _build_example(record, f"{where}.qas[{index}]", title, context, collector)
        if example is not None:
            yield example


def _hf_row_example(
    row: object, where: str, v2: bool, collector: _Collector
) -> SquadExample | None:
    """Rewrite one HF row into the official record shape and validate it like a file record.

    HF rows carry ``answers = {"text": [...], "answer_start": [...]}`` and no
    ``is_impossible``; in ``squad_v2`` an empty answer list is what marks a question
    unanswerable.
    """
    if not isinstance(row, Mapping):
        collector.skip(None, None, f"{where}: row must be a mapping, got {type(row).__name__}")
        return None
    title = row.get("title", _MISSING)
    context = row.get("context", _MISSING)
    answers, answers_fault = _hf_answers(row.get("answers", _MISSING))
    record: dict[str, object] = {"answers": answers}
    for key in ("id", "question"):
        if key in row:
            record[key] = row[key]
    if v2 and answers_fault is None:
        record["is_impossible"] = not answers
    return _build_example(record, where, title, context, collector, answers_fault)


def _hf_answers(value: object) -> tuple[list[dict[str, object]], str | None]:
    """HF's columnar answers as official answer dicts, or a fault when they do not line up."""
    if value is _MISSING:
        return [], "missing 'answers'"
    if not isinstance(value, Mapping):
        return [], f"'answers' must be a mapping of lists, got {type(value).__name__}"
    texts, starts = value.get("text"), value.get("answer_start")
    if not isinstance(texts, list | tuple) or not isinstance(starts, list | tuple):
        return [], "'answers' must hold 'text' and 'answer_start' lists"
    if len(texts) != len(starts):
        return [], (f"'answers' has {len(texts)} texts but {len(starts)} answer_start values")
    return [{"text": t, "answer_start": s} for t, s in zip(texts, starts, strict=True)], None


# --------------------------------------------------------------------------- one question


def _build_example(
    record: object,
    where: str,
    title: object,
    context: object,
    collector: _Collector,
    source_fault: str | None = None,
) -> SquadExample | None:
    """Validate one question with its title and context: the single place SQuAD's rules live.

    Title and context are checked per question (cheap) so that a bad paragraph reports every
    question it costs under that question's own id. `source_fault` is a fault found while
    reshaping the record (HF answers that do not line up).
    """
    if not isinstance(record, dict):
        collector.skip(
            title, None, f"{where}: question must be an object, got {_json_type(record)}"
        )
        return None
    if "is_impossible" in record:
        collector.saw_is_impossible = True
    qid = record.get("id", _MISSING)
    fault = _record_fault(record, where, title, context) or source_fault
    if fault is None and qid in collector.loaded_ids:
        fault = f"duplicate question id (already loaded from article '{collector.loaded_ids[qid]}')"
    if fault is not None:
        collector.skip(title, _id_for_report(qid), fault)
        return None
    # Every field now has its expected type: the checks above return a fault otherwise.
    assert isinstance(qid, str) and isinstance(title, str) and isinstance(context, str)
    is_impossible = record.get("is_impossible") is True
    answers = (
        [] if is_impossible else _aligned_answers(record["answers"], context, title, qid, collector)
    )
    if not is_impossible and not record["answers"]:
        collector.skip(title, qid, "no answers given, yet not marked is_impossible")
        return None
    if not is_impossible and not answers:
        purpose = "a training example needs" if collector.for_training else "scoring needs"
        collector.skip(title, qid, f"answerable but no valid answer left ({purpose} one)")
        return None
    collector.loaded_ids[qid] = title
    return SquadExample(
        id=qid,
        title=title,
        context=context,
        question=record["question"],
        answers=answers,
        is_impossible=is_impossible,
    )


def _record_fault(
    record: dict[str, object], where: str, title: object, context: object
) -> str | None:
    """The first reason the question cannot be loaded at all, or None.

    Every check here is about types, emptiness and encoding; answers whose offsets are merely
    wrong are repaired or dropped later, one by one.
    """
    id_fault = _text_fault(record.get("id", _MISSING), "id")
    if id_fault is not None:
        return f"{id_fault} ({where})"  # without an id, the path is the only way to find it
    return (
        _text_fault(title, "title")
        or _text_fault(context, "context")
        or _text_fault(record.get("question", _MISSING), "question")
        or _impossible_fault(record)
        or _answer_types_fault(record.get("answers", _MISSING))
    )


def _impossible_fault(record: dict[str, object]) -> str | None:
    """Check the v2.0 flag; a question both impossible and answered is contradictory.

    Such a question is skipped rather than guessed at: the official v2.0 scorer looks only at
    ``answers``, so keeping either reading could silently change the score.
    """
    if "is_impossible" not in record:
        return None
    flag = record["is_impossible"]
    if not isinstance(flag, bool):
        return f"'is_impossible' must be true or false, got {_json_type(flag)}"
    answers = record.get("answers")
    if flag and isinstance(answers, list) and answers:
        return f"'is_impossible' is true but {len(answers)} answer(s) are given"
    return None


def _answer_types_fault(answers: object) -> str | None:
    """Check every answer's shape before any is used, so a malformed record is skipped whole."""
    if not isinstance(answers, list):
        return _list_fault(answers, "answers")
    for index, answer in enumerate(answers):
        if not isinstance(answer, dict):
            return f"answers[{index}] must be an object, got {_json_type(answer)}"
        text = answer.get("text", _MISSING)
        if not isinstance(text, str):
            return f"answers[{index}]: {_type_fault(text, 'text', 'a string')}"
        start = answer.get("answer_start", _MISSING)
        if not isinstance(start, int) or isinstance(start, bool):
            return f"answers[{index}]: {_type_fault(start, 'answer_start', 'an integer')}"
        encoding_fault = _encoding_fault(text, "answer text")
        if encoding_fault is not None:
            return f"answers[{index}]: {encoding_fault}"
    return None


def _aligned_answers(
    answers: list[dict[str, Any]],
    context: str,
    title: str,
    qid: str,
    collector: _Collector,
) -> list[GoldAnswer]:
    """Answers whose offsets point at their text, repairing or dropping the rest."""
    aligned = []
    for index, answer in enumerate(answers):
        text, given = answer["text"], answer["answer_start"]
        if not text.strip():
            collector.problem(title, qid, f"answers[{index}]: answer text is empty; dropped")
            continue
        if given >= 0 and context[given : given + len(text)] == text:
            aligned.append(GoldAnswer(text, given))
            continue
        start = _nearest_occurrence(context, text, given)
        if start is None:
            collector.problem(
                title,
                qid,
                f"answers[{index}]: answer {text!r} does not occur in the context; dropped",
            )
            continue
        collector.repaired += 1
        collector.problem(
            title,
            qid,
            f"answers[{index}]: answer {text!r}: answer_start {given} repaired to {start}",
        )
        aligned.append(GoldAnswer(text, start))
    return aligned


def _nearest_occurrence(context: str, text: str, target: int) -> int | None:
    """Start of the occurrence of `text` nearest to `target` (earlier one on a tie).

    Why nearest: annotators' offsets are usually off by a little (whitespace, tokenisation),
    so the closest copy is the likeliest intended span when the text occurs several times.
    """
    best: int | None = None
    position = context.find(text)
    while position != -1:
        if best is None or abs(position - target) < abs(best - target):
            best = position
        if position > target:
            break  # later occurrences are only farther away
        position = context.find(text, position + 1)
    return best


def _official_qa(example: SquadExample, v2: bool) -> dict[str, Any]:
    """One question in the official layout."""
    qa: dict[str, Any] = {
        "id": example.id,
        "question": example.question,
        "answers": [{"text": a.text, "answer_start": a.start} for a in example.answers],
    }
    if v2:
        qa["is_impossible"] = example.is_impossible
    return qa


# --------------------------------------------------------------------------- field checks


def _text_fault(value: object, name: str) -> str | None:
    """Why `value` cannot be the non-empty, well-encoded text field `name`, or None."""
    if not isinstance(value, str):
        return _type_fault(value, name, "a string")
    if not value.strip():
        return f"'{name}' is empty" if not value else f"'{name}' is whitespace only"
    return _encoding_fault(value, name)


def _encoding_fault(text: str, name: str) -> str | None:
    """Say where `text` stops being valid Unicode: an undecodable byte or a lone surrogate."""
    index = _first_invalid_char(text)
    if index is None:
        return None
    code = ord(text[index])
    if code in _ESCAPED_BYTES:
        offset = len(text[:index].encode("utf-8"))
        return f"{_BAD_BYTES} in {name} (byte 0x{code - 0xDC00:02X} at byte {offset} of the {name})"
    return f"invalid Unicode in {name} (lone surrogate U+{code:04X} at character {index})"


def _first_invalid_char(text: str) -> int | None:
    """Index of the first character UTF-8 cannot encode (a lone surrogate), or None.

    Encoding in C and reading the error's position is far faster than a Python loop.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _list_fault(value: object, name: str) -> str | None:
    """Why `value` cannot be the list field `name`, or None."""
    return None if isinstance(value, list) else _type_fault(value, name, "a list")


def _type_fault(value: object, name: str, expected: str) -> str:
    """A 'missing' / 'wrong type' message in JSON's own words."""
    if value is _MISSING:
        return f"missing '{name}'"
    return f"'{name}' must be {expected}, got {_json_type(value)}"


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages about JSON files."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _printable(value: object) -> str | None:
    """A title or id safe to print and log: undecodable bytes shown as ``\\xNN``."""
    if not isinstance(value, str):
        return None
    if _first_invalid_char(value) is None:
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _id_for_report(qid: object) -> str | None:
    """The id as problems should show it: a wrong-typed id (say 17) is still worth naming,
    while an absent or blank one is None so that the record's path identifies it instead."""
    if isinstance(qid, str):
        return qid if qid.strip() else None
    if isinstance(qid, int | float) and not isinstance(qid, bool):
        return repr(qid)
    return None


def _fetch_hub_rows(name: str, split: str) -> Iterable[object]:
    """Rows of a hub dataset; every failure says how to go on without the hub."""
    fallback = "pass a local SQuAD JSON file instead (e.g. ../shared/squad/dev-v1.1.json)"
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise RuntimeError(
            f"loading {name!r} from the Hugging Face hub needs the optional 'datasets' "
            f"package (pip install 'spanqa[hub]'); or {fallback}"
        ) from exc
    try:
        return load_dataset(name, split=split)
    except Exception as exc:  # network, auth, unknown split: all mean "hub not usable"
        raise RuntimeError(
            f"could not load {name!r} split {split!r} from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}); {fallback}"
        ) from exc
