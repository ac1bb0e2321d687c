"""Turning files into `Document`s: one reader per format, never fatal.

Every reader returns a list of `Document | Skipped`, so that a folder with one broken file
still indexes the rest and the build can report what it left out and why. Text is kept as
extracted (passages store character offsets into it); the only rewriting is what each
format needs to become plain text (decoding, newline normalisation, HTML block breaks).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..core.strictjson import first_non_finite, marked_loads
from ..index.records import Document, Section, Skipped
from .archive import ArchiveLimitError, check_zip
from .decoding import decode_utf16, guess_legacy
from .html_text import HtmlError, read_page
from .limits import DEFAULT_LIMITS, ParseLimits
from .pdf_text import PdfError, read_pdf

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".json", ".jsonl")
MAX_FILE_BYTES = 50 * 1024 * 1024  # default limit; files above it are skipped ("too large")

PARAGRAPH_BREAK = "\n\n"

Result = Document | Skipped
# Every reader: (path, bytes, limits) -> its documents and skipped records
Reader = Callable[[Path, bytes, ParseLimits], list[Result]]


class _Unreadable(Exception):
    """Raised inside a reader for an expected failure; `read_file` turns it into `Skipped`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------
# ids and hashes


def document_id(path: str | Path, record_id: str | None = None) -> str:
    """A stable id: the same file (however it was named) and record always get the same id,
    so that rebuilding an index updates documents instead of duplicating them."""
    resolved = os.fsencode(Path(path).resolve())
    if record_id is not None:
        resolved += b"#" + str(record_id).encode("utf-8", "surrogatepass")
    return hashlib.sha256(resolved).hexdigest()[:16]


def content_hash(text: str) -> str:
    """sha256 of the text: what decides whether a document changed since the last build."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------------------
# walking paths


def iter_documents(
    paths: Iterable[str | Path],
    *,
    max_bytes: int = MAX_FILE_BYTES,
    read: Callable[[Path], list[Result]] | None = None,
) -> Iterator[Result]:
    """Documents (and Skipped) from files and folders, in a deterministic order.

    Folders are walked recursively in sorted order, skipping hidden entries (".git",
    ".DS_Store"); a file named explicitly is read even if hidden. A file reached twice (named
    twice, or inside two named folders) is read once, since its documents would share ids.
    `read` replaces `read_file` for each file: the isolated parser (isolation.py) comes in
    here, so that the walk itself, which opens no file, stays in the calling process.
    """
    read = read or partial(read_file, max_bytes=max_bytes)
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if not path.exists() and not path.is_symlink():
            yield Skipped(str(path), "no such file or directory")
            continue
        files = _walk(path) if path.is_dir() else iter([path])
        for item in files:
            if isinstance(item, Skipped):
                yield item
                continue
            key = _identity(item)
            if key in seen:
                continue
            seen.add(key)
            yield from read(item)


def _identity(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: read_file will report it
        return path.absolute()


def _walk(folder: Path) -> Iterator[Path | Skipped]:
    """Files under `folder`, sorted by name at each level, hidden entries left out.

    Symlinked folders are not followed (they can form cycles); symlinked files are read.
    """
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        yield Skipped(str(folder), _describe(exc))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)
        elif not entry.is_dir():
            yield entry


# --------------------------------------------------------------------------------------
# one file


def read_file(
    path: str | Path, *, max_bytes: int = MAX_FILE_BYTES, limits: ParseLimits = DEFAULT_LIMITS
) -> list[Result]:
    """All documents in one file; any failure becomes a `Skipped`, never an exception,
    because one bad file must never abort a build. The one exception is MemoryError: in
    the parse worker it means the worker's memory limit, which the parent reports
    (isolation.py); in-process it is the whole process running out, not one file's fault.

    `Document.path` is the resolved path (what ids derive from); `Skipped.path` is the path
    as given, which reads better in a report and exists even when the file does not.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        return [Skipped(str(path), f"unsupported file type {suffix or '(no extension)'}")]
    try:
        data, mtime = _read_bytes(path, max_bytes)
        results = reader(path, data, limits)
        return [_stamp(item, mtime) for item in results]
    except _Unreadable as exc:
        return [Skipped(str(path), exc.reason)]
    except MemoryError:
        raise
    except Exception as exc:  # one bad file must never abort a build
        return [Skipped(str(path), _describe(exc))]


def _read_bytes(path: Path, max_bytes: int) -> tuple[bytes, float]:
    """The file's bytes and mtime; refuses anything that is not a regular file (a FIFO would
    block) and anything over `max_bytes`, checked before reading and again while reading (the
    file may grow in between)."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise _Unreadable("no such file (or a broken symlink)") from exc
    if not stat.S_ISREG(info.st_mode):
        raise _Unreadable("not a regular file")
    if info.st_size > max_bytes:
        raise _Unreadable(f"too large ({info.st_size} bytes > {max_bytes})")
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _Unreadable(f"too large (more than {max_bytes} bytes)")
    return data, info.st_mtime


def _stamp(item: Result, mtime: float) -> Result:
    """Sets what every Document carries, so that readers only produce id/title/text."""
    if isinstance(item, Document):
        item.mtime = mtime
    return item


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _make_document(
    path: Path,
    title: str,
    text: str,
    *,
    record_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    sections: list[Section] | None = None,
) -> Result:
    """A Document with the fields every reader fills the same way; blank text is Skipped."""
    resolved = str(path.resolve())
    if not text.strip():
        return Skipped(str(path), "empty document")
    meta = dict(metadata or {})
    meta["path"] = resolved
    if record_id is not None:
        meta["record_id"] = record_id
    return Document(
        id=document_id(resolved, record_id),
        path=resolved,
        title=title,
        text=text,
        content_hash=content_hash(text),
        metadata=meta,
        sections=list(sections or []),
    )


# --------------------------------------------------------------------------------------
# decoding bytes to text

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# C0/C1 control characters other than tab, newline, vertical tab, form feed, carriage return
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_MAX_CONTROL_RATIO = 0.05  # more control characters than this: not text, whatever it decodes to
_BINARY_SAMPLE = 1 << 20  # characters looked at: enough to tell, cheap on a 50 MB file


def _decode(data: bytes, declared: str | None = None) -> str:
    """Bytes to text: a BOM wins, then UTF-16 without a BOM (NUL bytes on one side of the
    byte pairs), then a declared charset (HTML), then strict UTF-8, then the most plausible
    legacy reading (indexer/decoding.py). Raises _Unreadable for binary or undecodable
    content rather than return a garbled reading."""
    text = _decode_bom(data)
    if text is None:
        if b"\x00" in data:
            text = _decode_utf16(data)
        else:
            text = _decode_declared(data, declared) if declared else None
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _guess_decode(data)
    if _looks_binary(text):
        raise _Unreadable("binary file")
    return text


def _decode_bom(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise _Unreadable(f"undecodable text (invalid {encoding})") from exc
    return None


def _decode_utf16(data: bytes) -> str:
    """NUL bytes in a text file mean UTF-16 without a BOM, or binary: UTF-16 only if one
    byte order decodes strictly to plausible text."""
    text = decode_utf16(data)
    if text is None:
        raise _Unreadable("binary file")
    return text


def _decode_declared(data: bytes, declared: str) -> str | None:
    """Decodes with an HTML-declared charset the way browsers do: latin-1/ascii mean cp1252,
    a UTF-16/32 declaration in an ASCII-compatible file is wrong; None when it does not fit."""
    try:
        name = codecs.lookup(declared).name
    except LookupError:
        return None
    if name in ("ascii", "iso8859-1", "latin-1"):
        name = "cp1252"
    if name.startswith(("utf-16", "utf-32")):
        return None
    try:
        return data.decode(name)
    except UnicodeDecodeError:
        return None


def _guess_decode(data: bytes) -> str:
    """The most plausible legacy reading (cp1252 on a tie); a file that no encoding reads
    plausibly is skipped, never indexed garbled."""
    guess = guess_legacy(data)
    if guess is None:
        raise _Unreadable("undecodable text (not UTF-8, and no legacy encoding reads as text)")
    return guess[0]


def _looks_binary(text: str) -> bool:
    """A decoding can "succeed" on binary data; text is not mostly control characters."""
    sample = text[:_BINARY_SAMPLE]
    return bool(sample) and len(_CONTROL.findall(sample)) / len(sample) > _MAX_CONTROL_RATIO


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------------------
# plain text and markdown

_ATX_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _read_text(path: Path, data: bytes, limits: ParseLimits) -> list[Result]:
    text = _normalise_newlines(_decode(data))
    return [_make_document(path, path.stem, text)]


def _read_markdown(path: Path, data: bytes, limits: ParseLimits) -> list[Result]:
    """Markdown stays as it is (already readable); only the title comes from the markup."""
    text = _normalise_newlines(_decode(data))
    return [_make_document(path, _markdown_title(text) or path.stem, text)]


def _markdown_title(text: str) -> str | None:
    """The first level-1 ATX heading outside fenced code (where "# ..." is a comment)."""
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _ATX_H1.match(line)):
            return match.group(1).strip()
    return None


# --------------------------------------------------------------------------------------
# HTML

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _read_html(path: Path, data: bytes, limits: ParseLimits) -> list[Result]:
    """Visible text, one paragraph per block element (see html_text.py); encoding from BOM,
    <meta>, or guess. The decoded text goes to the parser as UTF-8, so that a <meta charset>
    cannot make it decode the page a second time, differently."""
    match = _META_CHARSET.search(data[:4096])
    declared = match.group(1).decode("ascii") if match else None
    text = _decode(data, declared)
    try:
        page = read_page(text.encode("utf-8", "replace"), limits.max_depth)
    except HtmlError as exc:
        raise _Unreadable(str(exc)) from exc
    return [_make_document(path, page.title or path.stem, PARAGRAPH_BREAK.join(page.blocks))]


# --------------------------------------------------------------------------------------
# PDF


def _read_pdf(path: Path, data: bytes, limits: ParseLimits) -> list[Result]:
    """One Section per page with text, so that no passage spans two pages and every
    passage can cite its page; the text as indexer/pdf_text.py reads it (PDFium's spacing,
    no running headers or footers, broken words joined). Where pages print numbers of
    their own, metadata["page_labels"] maps the page to the number a reader sees on it."""
    try:
        pdf = read_pdf(data)
    except PdfError as exc:
        raise _Unreadable(str(exc)) from exc
    if not pdf.pages:
        if pdf.unreadable:
            raise _Unreadable(f"unreadable PDF ({pdf.unreadable[0]})")
        raise _Unreadable("no extractable text (scanned PDF?)")
    sections, offset = [], 0
    for page in pdf.pages:
        sections.append(Section(offset, offset + len(page.text), page=page.number))
        offset += len(page.text) + len(PARAGRAPH_BREAK)
    metadata: dict[str, Any] = {"pages": pdf.page_count}
    labels = {str(p.number): p.label for p in pdf.pages if p.label and p.label != str(p.number)}
    if labels:
        metadata["page_labels"] = labels
    if pdf.unreadable:
        metadata["unreadable_pages"] = pdf.unreadable
    text = PARAGRAPH_BREAK.join(page.text for page in pdf.pages)
    return [_make_document(path, pdf.title or path.stem, text, metadata=metadata,
                           sections=sections)]


# --------------------------------------------------------------------------------------
# DOCX


def _read_docx(path: Path, data: bytes, limits: ParseLimits) -> list[Result]:
    """Body paragraphs and table cells in document order, one paragraph each. The zip is
    checked against the unpacked-size limits first (archive.py): python-docx reads every
    part whole. Its XML parser stops at 256 levels of nesting, with an error, not a cut."""
    import docx

    try:
        check_zip(data, limits)
        document = docx.Document(io.BytesIO(data))
    except ArchiveLimitError as exc:
        raise _Unreadable(str(exc)) from exc
    except MemoryError:
        raise
    except Exception as exc:  # BadZipFile, PackageNotFoundError, KeyError, lxml errors
        raise _Unreadable(f"unreadable DOCX ({_describe(exc)})") from exc
    paragraphs = list(_docx_paragraphs(document))
    text = PARAGRAPH_BREAK.join(p.text for p in paragraphs if p.text.strip())
    title = _docx_title(document, paragraphs) or path.stem
    return [_make_document(path, title, text)]


def _docx_paragraphs(container: Any) -> Iterator[Any]:
    """Paragraphs of a document or table cell, descending into tables; a merged cell
    appears once per spanned grid column in python-docx, so repeats are skipped."""
    from docx.table import Table

    for block in container.iter_inner_content():
        if not isinstance(block, Table):
            yield block
            continue
        for row in block.rows:
            previous = None
            for cell in row.cells:
                if cell._tc is previous:
                    continue
                previous = cell._tc
                yield from _docx_paragraphs(cell)


def _docx_title(document: Any, paragraphs: list[Any]) -> str | None:
    core_title = (document.core_properties.title or "").strip()
    if core_title:
        return core_title
    for paragraph in paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        if style.startswith(("Heading", "Title")) and paragraph.text.strip():
            return paragraph.text.strip()
    return None


# --------------------------------------------------------------------------------------
# JSON, JSON lines and SQuAD

_RECORD_FIELDS = ("id", "title", "text", "metadata")


def _read_json(path: Path, data: bytes, limits: ParseLimits) -> list[Result]:
    """A list of records, {"records" | "documents": [...]}, one record, or SQuAD. Numbers
    strict JSON does not allow are marked, so that only their records are skipped."""
    try:
        value = marked_loads(_decode(data))
    except json.JSONDecodeError as exc:
        raise _Unreadable(f"invalid JSON: {exc}") from exc
    if _is_squad(value):
        _check_record_count(len(value["data"]), limits)
        return _squad_documents(path, value["data"])
    records = _json_records(value)
    _check_record_count(len(records), limits)
    return _records_to_documents(path, [(f"record {i}", str(i), r) for i, r in enumerate(records)])


def _json_records(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in ("records", "documents"):
            if isinstance(value.get(key), list):
                return value[key]
        return [value]
    raise _Unreadable(f"unsupported JSON layout: top level is a {type(value).__name__}")


def _read_jsonl(path: Path, data: bytes, limits: ParseLimits) -> list[Result]:
    """One record per line; a bad line is skipped alone, blank lines are ignored. Lines are
    split on "\n" only: JSON strings may hold a raw U+2028, which str.splitlines splits on."""
    lines = [(number, line) for number, line in enumerate(_decode(data).split("\n"), start=1)
             if line.strip()]
    _check_record_count(len(lines), limits)  # before any record is parsed
    entries: list[tuple[str, str, Any]] = []
    for number, line in lines:
        try:
            record: Any = marked_loads(line)
        except json.JSONDecodeError as exc:
            record = _Unreadable(f"invalid JSON ({exc.msg}, column {exc.colno})")
        entries.append((f"line {number}", str(number), record))
    return _records_to_documents(path, entries)


def _check_record_count(count: int, limits: ParseLimits) -> None:
    """Refuses a file of more records than `limits.max_records`. Each record costs the
    index (and the process the parse worker sends it to) a Document, whatever its size: a
    1.3 MB file of 100,000 `{"text": "a"}` lines made a 30 MB reply and 135 MB of them."""
    if count > limits.max_records:
        raise _Unreadable(f"{count} records, more than the {limits.max_records}-record limit")


def _records_to_documents(path: Path, entries: list[tuple[str, str, Any]]) -> list[Result]:
    """Documents from (location, fallback id, record) entries, in order; a bad or duplicate
    record is Skipped with its location ("line 3: no text field") while the others load."""
    results: list[Result] = []
    first_seen: dict[str, str] = {}
    for where, fallback_id, record in entries:
        try:
            record_id, title, text, metadata = _parse_record(record, fallback_id)
            if record_id in first_seen:
                raise _Unreadable(f"duplicate id {record_id!r} (first at {first_seen[record_id]})")
        except _Unreadable as exc:
            results.append(Skipped(str(path), f"{where}: {exc.reason}"))
            continue
        first_seen[record_id] = where
        title = title or f"{path.stem} {record_id}"
        results.append(_make_document(path, title, text, record_id=record_id, metadata=metadata))
    return results


def _parse_record(record: Any, fallback_id: str) -> tuple[str, str | None, str, dict[str, Any]]:
    """(id, title, text, metadata) of one record. A record without an id is keyed by its
    position (record index for .json, line number for .jsonl); fields other than id, title,
    text and metadata go into metadata (the record's own metadata wins on a clash). A
    NaN or infinite number anywhere in the record rejects it: metadata is stored as strict
    JSON."""
    if isinstance(record, _Unreadable):
        raise record
    if not isinstance(record, dict):
        raise _Unreadable(f"record is a {type(record).__name__}, not an object")
    if (non_finite := first_non_finite(record)) is not None:
        field, marker = non_finite
        raw = record.get("id")
        plain_id = isinstance(raw, str | int) and not isinstance(raw, bool)
        named = f"record {raw!r}: " if plain_id else ""
        why = ("beyond a float's range (it would be stored as Infinity)" if marker.beyond_range
               else "which strict JSON does not allow (no NaN or Infinity)")
        raise _Unreadable(f"{named}{field} is {marker.literal}, {why}")
    if "text" not in record:
        raise _Unreadable("no text field")
    text = record["text"]
    if not isinstance(text, str):
        raise _Unreadable(f"text is a {type(text).__name__}, not a string")
    if not text.strip():
        raise _Unreadable("empty text")
    raw_id = record.get("id")
    if raw_id is None:
        record_id = fallback_id
    elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
        record_id = str(raw_id)
    else:
        raise _Unreadable(f"id is a {type(raw_id).__name__}, not a string or integer")
    given_meta = record.get("metadata")
    if given_meta is not None and not isinstance(given_meta, dict):
        raise _Unreadable(f"metadata is a {type(given_meta).__name__}, not an object")
    metadata = {k: v for k, v in record.items() if k not in _RECORD_FIELDS}
    metadata.update(given_meta or {})
    title = record.get("title")
    title = title.strip() if isinstance(title, str) and title.strip() else None
    return record_id, title, text, metadata


def _is_squad(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("data"), list)
        and any(isinstance(a, dict) and "paragraphs" in a for a in value["data"])
    )


def _squad_documents(path: Path, articles: list[Any]) -> list[Result]:
    """One Document per SQuAD article, one Section per paragraph (so that the chunker
    never merges two paragraphs); the id comes from the article's own title."""
    results: list[Result] = []
    seen: set[str] = set()
    for index, article in enumerate(articles):
        try:
            raw_title, text, sections = _squad_article(article, index)
        except _Unreadable as exc:
            results.append(Skipped(str(path), f"article {index}: {exc.reason}"))
            continue
        if raw_title in seen:
            reason = f"article {index}: duplicate title {raw_title!r}"
            results.append(Skipped(str(path), reason))
            continue
        seen.add(raw_title)
        title = raw_title.replace("_", " ")
        metadata = {"source": "squad"}
        document = _make_document(
            path, title, text, record_id=raw_title, metadata=metadata, sections=sections
        )
        results.append(document)
    return results


def _squad_article(article: Any, index: int) -> tuple[str, str, list[Section]]:
    if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
        raise _Unreadable("not an article with paragraphs")
    raw_title = article.get("title")
    if not isinstance(raw_title, str) or not raw_title.strip():
        raw_title = f"article {index}"
    contexts = [
        p["context"]
        for p in article["paragraphs"]
        if isinstance(p, dict) and isinstance(p.get("context"), str) and p["context"].strip()
    ]
    if not contexts:
        raise _Unreadable("no paragraph with a context")
    sections: list[Section] = []
    offset = 0
    for context in contexts:
        sections.append(Section(offset, offset + len(context)))
        offset += len(context) + len(PARAGRAPH_BREAK)
    return raw_title, PARAGRAPH_BREAK.join(contexts), sections


# --------------------------------------------------------------------------------------

_READERS: dict[str, Reader] = {
    ".txt": _read_text,
    ".md": _read_markdown,
    ".markdown": _read_markdown,
    ".html": _read_html,
    ".htm": _read_html,
    ".pdf": _read_pdf,
    ".docx": _read_docx,
    ".json": _read_json,
    ".jsonl": _read_jsonl,
}
