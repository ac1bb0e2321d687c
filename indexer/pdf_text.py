"""A PDF's text as a person reads it: words with their spaces, hyphenated line ends
joined, running headers, footers and page numbers left out (the page number is kept).

Why PDFium (pypdfium2, BSD/Apache): many typesetters place words without a space
character between them; PDFium infers the spaces from the glyphs' positions, as a viewer
does. On the Debian Reference (261 pages, DBLaTeX) pypdf's text held 46,291 word tokens
where PDFium's holds the page's 82,658; bench/pdf_text.py compares the extractors by
producer, by real-word share and time per page.

The clean-up works on lines: PDFium ends each line it finds with a line break.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

EDGE_LINES = 3  # lines at a page's top and bottom that may be running headers/footers
# A line is a running header/footer when its shape (digits as "#") recurs at the edge of
# this share of the pages (and of at least MIN_REPEATS pages): "Debian Reference 33 / 233".
REPEAT_SHARE = 0.3
MIN_REPEATS = 3
# How a hyphen at a line end reaches the text: PDFium joins the line and leaves U+FFFE
# where any hyphen was (one the typesetter added, or the word's own); producers mark the
# ones they added as soft (U+00AD, or PDFium's U+0002).
SOFT_HYPHENS = "\x02\xad\ufffe"

_NUMBER = re.compile(r"\d+")
_ROMAN = re.compile(r"\b[ivxlcdm]+\b")
_BROKEN_WORD = re.compile(rf"([^\W\d_]+)([-{SOFT_HYPHENS}])\n?([^\W\d_]+)")
_NO_SOFT_HYPHENS = str.maketrans(dict.fromkeys(SOFT_HYPHENS))
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


class PdfError(Exception):
    """The file cannot be opened as a PDF (damaged, or needs a password)."""


@dataclass(frozen=True)
class PdfPage:
    number: int  # 1-based, as the viewer counts
    text: str
    label: str | None = None  # the number printed on the page, where its footer shows one


@dataclass(frozen=True)
class PdfText:
    title: str | None
    page_count: int
    pages: list[PdfPage]  # the pages with text, in order
    unreadable: list[str]  # "page N: why" for pages whose text could not be read


def read_pdf(data: bytes) -> PdfText:
    """The text of every page of the PDF in `data`, cleaned as the module says."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise PdfError("encrypted PDF (password required)") from exc
        raise PdfError(f"unreadable PDF ({exc})") from exc
    try:
        raw, unreadable = [], []
        for number in range(1, len(document) + 1):
            try:
                raw.append((number, page_lines(document, number - 1)))
            except pdfium.PdfiumError as exc:  # a bad page costs that page only
                unreadable.append(f"page {number}: {exc}")
        title = _title(document)
        count = len(document)
    finally:
        document.close()
    return PdfText(title, count, clean_pages(raw), unreadable)


def page_lines(document, index: int) -> list[str]:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_range()
        finally:
            textpage.close()
    finally:
        page.close()
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return [line.rstrip() for line in text.split("\n")]


def clean_pages(raw: list[tuple[int, list[str]]]) -> list[PdfPage]:
    """Pages with their running headers/footers and page numbers removed and their
    hyphenated line ends joined; pages left without text are dropped."""
    edges = [edge_shapes(lines) for _, lines in raw]  # each page's edge lines, once
    furniture = recurring(edges)
    positions = page_number_positions([lines for _, lines in raw], edges, furniture)
    vocabulary = Counter(w.lower() for _, lines in raw for line in lines
                         for w in _WORD.findall(line))
    pages = []
    for (number, lines), shapes in zip(raw, edges, strict=True):
        kept, label = strip_edges(lines, shapes, furniture, positions)
        text = join_broken_words("\n".join(kept).strip(), vocabulary)
        if text:
            pages.append(PdfPage(number, text, label))
    return pages


def shape(line: str) -> str:
    """What a running line keeps from page to page: its words, numbers as '#'."""
    line = " ".join(line.split()).lower()
    return _ROMAN.sub("#", _NUMBER.sub("#", line)) if line else ""


def edge_shapes(lines: list[str]) -> dict[int, str]:
    """The first and last EDGE_LINES non-empty lines, by index, as their shapes."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return {i: shape(lines[i]) for i in sorted(set(filled[:EDGE_LINES] + filled[-EDGE_LINES:]))}


def running_lines(pages: list[list[str]]) -> set[str]:
    """Shapes of the lines that recur at page edges: the document's headers and footers."""
    return recurring([edge_shapes(lines) for lines in pages])


def recurring(edges: list[dict[int, str]]) -> set[str]:
    """The edge shapes that recur on enough pages to be running lines."""
    if len(edges) < MIN_REPEATS:
        return set()
    counts: Counter = Counter()
    for shapes in edges:
        counts.update(set(shapes.values()))
    need = max(MIN_REPEATS, REPEAT_SHARE * len(edges))
    return {s for s, n in counts.items() if s and n >= need}


def page_number_positions(pages: list[list[str]], edges: list[dict[int, str]],
                          furniture: set[str]) -> dict[str, int]:
    """For each running line that counts pages, which of its numbers does: the one that
    changes from page to page ("Debian Reference 33 / 233": the first; "BASH(1)": none)."""
    seen: dict[str, list[list[str]]] = {}
    for lines, shapes in zip(pages, edges, strict=True):
        for i, key in shapes.items():
            if key in furniture:
                seen.setdefault(key, []).append(_NUMBER.findall(lines[i]))
    positions = {}
    for key, numbers in seen.items():
        width = min(len(n) for n in numbers)
        for k in range(width):
            if len({n[k] for n in numbers}) > len(numbers) // 2:
                positions[key] = k
                break
    return positions


def strip_edges(lines: list[str], shapes: dict[int, str], furniture: set[str],
                page_numbers: dict[str, int]) -> tuple[list[str], str | None]:
    """The page's lines without its running ones; the page number one of them printed.
    A page made of nothing but such lines keeps them: running lines frame a page's text,
    so these must be its text (short pages of a form, a slide deck's repeated titles)."""
    drop, label = set(), None
    for i, key in shapes.items():
        if key in furniture:
            drop.add(i)
            if label is None and key in page_numbers:
                label = _NUMBER.findall(lines[i])[page_numbers[key]]
    kept = [line for i, line in enumerate(lines) if i not in drop]
    if not any(line.strip() for line in kept):
        return lines, None
    return kept, label


def join_broken_words(text: str, vocabulary: Counter) -> str:
    """"experi-\\nment" -> "experiment". A hyphen the producer marked as soft goes; one at
    a line end (PDFium: U+FFFE in place of the hyphen and the break) goes too, unless a
    capital follows ("Jean-Pierre") or the document spells the word with it elsewhere and
    never without ("well-known")."""

    def join(match: re.Match) -> str:
        head, hyphen, tail = match.groups()
        if hyphen in "\x02\xad":  # the producer's own soft hyphen
            return head + tail
        if hyphen == "-" and "\n" not in match.group(0):  # inside a line: the word's own
            return match.group(0)
        joined, kept = (head + tail).lower(), f"{head}-{tail}".lower()
        if tail[0].isupper() or (vocabulary[kept] and not vocabulary[joined]):
            return f"{head}-{tail}"
        return head + tail

    text = _BROKEN_WORD.sub(join, text)
    return text.translate(_NO_SOFT_HYPHENS)  # marks left at a page's end or beside digits


def _title(document) -> str | None:
    try:
        title = document.get_metadata_dict().get("Title")
    except Exception:  # broken metadata must not cost the text
        return None
    return title.strip() if isinstance(title, str) and title.strip() else None
