"""Documents -> passages sized for an extractive reader.

Why passages: the retriever ranks passages and the reader looks for an answer span inside one
passage at a time. A passage must therefore be short enough for the reader's window (about 200
words leaves room for the question in 384 word pieces for most English text) and long enough to
hold an answer together with the words that identify it.

How, and why:

- Every passage is an exact slice ``document.text[start:end]``, trimmed of whitespace but never
  rewritten, so a span the reader finds in a passage maps back to the document by adding
  ``passage.start``, and a PDF answer can be shown on its page.
- Sections (PDF pages, SQuAD paragraphs) are walls: a passage never crosses one, because a page
  number must be true for the whole passage and a SQuAD paragraph must come back whole.
- Inside a section, blank-line separated paragraphs are packed whole and greedily: a paragraph
  is the author's own unit of meaning, so cutting between paragraphs loses the least.
- A paragraph longer than the target is cut into windows that share ``overlap`` words, so that
  an answer lying across a cut still appears whole in one window; cuts fall at sentence
  boundaries where possible, so that windows start and end where a reader would.
- Words are whitespace-separated runs, except that each Han/Hiragana/Katakana character is a
  word (those scripts do not separate words, so a run could be a whole page), and a run longer
  than 64 characters (a URL, or Thai, which has no spaces either) counts one word per 8
  characters, so that no passage can grow without bound. Cuts inside a run never separate a
  character from its combining marks or break an emoji sequence.
- Passage ids depend only on the document id, the span and the text, so they survive rebuilds,
  do not depend on the order documents are processed in, and an edit late in a document leaves
  the ids of the passages before it untouched.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import pairwise

from ..index.records import Document, Passage, Section
from ..index.text import CJK_RANGES
from .formats import content_hash

__all__ = [
    "ChunkConfig",
    "chunk_document",
    "count_words",
    "passage_id",
    "sentence_spans",
]

_Span = tuple[int, int]


@dataclass(frozen=True)
class ChunkConfig:
    """How large passages are; the defaults suit a 384-word-piece reader window."""

    words: int = 200  # target passage size in words
    overlap: int = 30  # words shared by consecutive windows of one long paragraph
    min_words: int = 20  # smaller paragraph groups are merged into a neighbour (same section)

    def __post_init__(self) -> None:
        if self.words < 1:
            raise ValueError(f"words must be at least 1, got {self.words}")
        if not 0 <= self.overlap < self.words:
            raise ValueError(f"overlap must be in [0, words), got {self.overlap}")
        if not 0 <= self.min_words <= self.words:
            raise ValueError(f"min_words must be in [0, words], got {self.min_words}")


# --------------------------------------------------------------------------------------
# words

# Scripts that do not separate words: every character is a word, the same blocks as the
# BM25 tokenizer's, so that both sides agree on what a CJK word is.
_CJK_CHAR = re.compile(f"[{CJK_RANGES}]")
# Ideographic and full-width punctuation stays with the character before it ("京。"), so that
# it neither counts as a word nor starts a passage.
_CJK_PUNCT = re.compile("[\u3001-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")
_RUN = re.compile(r"\S+")
_LONG_RUN = 64  # runs longer than this (in characters) count one word per _PIECE characters
_PIECE = 8


def _joins_previous(prev: str, ch: str) -> bool:
    """Whether a cut between ``prev`` and ``ch`` would break one visible character: a base and
    its combining marks (also NFD kana, Thai vowels), emoji joined by ZWJ, with a skin tone or
    tag, the two halves of a flag, or Hangul conjoining jamo."""
    if prev == "\u200d" or ch == "\u200d":
        return True
    if "\U0001f1e6" <= prev <= "\U0001f1ff" and "\U0001f1e6" <= ch <= "\U0001f1ff":
        return True
    if (
        "\U0001f3fb" <= ch <= "\U0001f3ff"  # skin tones
        or "\U000e0020" <= ch <= "\U000e007f"  # emoji tag sequences
        or "\u1160" <= ch <= "\u11ff"  # Hangul conjoining vowels and finals
    ):
        return True
    return unicodedata.category(ch)[0] == "M"


def _split_long(text: str, start: int, end: int) -> list[_Span]:
    """Pieces of about _PIECE characters of one long run, never cut inside a character."""
    pieces: list[_Span] = []
    a = start
    while end - a > _PIECE:
        cut = a + _PIECE
        while cut < end and _joins_previous(text[cut - 1], text[cut]):
            cut += 1
        if cut >= end:
            break
        pieces.append((a, cut))
        a = cut
    pieces.append((a, end))
    return pieces


def _split_run(text: str, start: int, end: int) -> list[_Span]:
    """The words of one whitespace-free run that holds CJK characters or is very long."""
    parts: list[_Span] = []
    part_start = start
    in_cjk = bool(_CJK_CHAR.match(text, start))
    for i in range(start + 1, end):
        ch = text[i]
        if _joins_previous(text[i - 1], ch):
            continue
        if _CJK_CHAR.match(ch):
            parts.append((part_start, i))
            part_start, in_cjk = i, True
        elif in_cjk and not _CJK_PUNCT.match(ch):
            parts.append((part_start, i))
            part_start, in_cjk = i, False
    parts.append((part_start, end))
    words: list[_Span] = []
    for a, b in parts:
        if b - a > _LONG_RUN and not _CJK_CHAR.match(text, a):
            words.extend(_split_long(text, a, b))
        else:
            words.append((a, b))
    return words


def _words(text: str, start: int, end: int) -> list[_Span]:
    """(start, end) of every word in ``text[start:end]``, in order: the units passages are
    measured and cut in."""
    plain = _CJK_CHAR.search(text, start, end) is None  # the common case: one search in all
    words: list[_Span] = []
    for match in _RUN.finditer(text, start, end):
        a, b = match.span()
        if b - a <= _LONG_RUN and (plain or _CJK_CHAR.search(text, a, b) is None):
            words.append((a, b))
        else:
            words.extend(_split_run(text, a, b))
    return words


def count_words(text: str) -> int:
    """Words as the chunker counts them: ``len(text.split())`` for text without CJK characters
    or runs over 64 characters."""
    return len(_words(text, 0, len(text)))


# --------------------------------------------------------------------------------------
# sentences

# A Latin sentence end: terminators, closing quotes or brackets, then whitespace; whether it
# really ends a sentence is decided by what follows and precedes (see _is_sentence_end).
# A CJK sentence end: 。！？ (and closing brackets), with or without whitespace after.
_SENTENCE_END = re.compile(
    r"""([.!?]+)["'”’)\]]*\s+"""
    "|[。｡！？]+[」』）】〕\"”’)]*\\s*"
)
_OPENERS = "\"'“‘([«"
# Never end a sentence: titles and the like ("Mr. Smith", "St. Louis", "et al. (2019)").
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "ft", "rev", "hon", "gen",
    "col", "lt", "capt", "sgt", "maj", "adm", "gov", "sen", "rep", "pres", "messrs", "mme",
    "mlle", "vs", "cf", "al", "approx", "ca", "viz", "ph.d", "dept", "univ",
})
# Do not end a sentence before a number ("No. 5", "pp. 12", "Dec. 25"), but may before a
# capital ("He said no. Then ...").
_BEFORE_NUMBER = frozenset({
    "no", "nos", "nr", "vol", "vols", "fig", "figs", "eq", "eqs", "p", "pp", "ch", "sec", "art",
    "op", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
})
# Initials and dotted abbreviations: "J.", "U.S.", "e.g.", "i.e." (the last dot excluded).
_INITIALS = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")


def _is_sentence_end(text: str, match: re.Match[str], start: int, end: int) -> bool:
    """Whether a Latin terminator match ends a sentence: the next sentence must begin with a
    capital (or a caseless letter) or a digit, possibly after an opening quote, and a single
    period must not end an abbreviation or an initial."""
    nxt = match.end()
    if text[nxt] in _OPENERS and nxt + 1 < end:
        nxt += 1
    first = text[nxt]
    if not (first.isdigit() or (first.isalpha() and not first.islower())):
        return False
    if match.group(1) != ".":
        return True  # "!", "?" and "..." end sentences
    dot = match.start(1)
    word_start = dot
    while word_start > start and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:dot].lstrip(_OPENERS).lower()
    if word in _ABBREVIATIONS or _INITIALS.fullmatch(word):
        return False
    return not (word in _BEFORE_NUMBER and first.isdigit())


def _sentence_starts(text: str, start: int, end: int) -> list[int]:
    """Offsets where a sentence begins inside ``text[start:end]``, the first one excluded."""
    starts = []
    for match in _SENTENCE_END.finditer(text, start, end):
        if match.end() >= end:
            continue
        if match.group(1) is None or _is_sentence_end(text, match, start, end):
            starts.append(match.end())
    return starts


def sentence_spans(text: str) -> list[_Span]:
    """(start, end) of each sentence of ``text``, trimmed: where the chunker prefers to cut."""
    first = _RUN.search(text)
    if first is None:
        return []
    bounds = [first.start(), *_sentence_starts(text, 0, len(text)), len(text)]
    return [(a, a + len(text[a:b].rstrip())) for a, b in pairwise(bounds)]


# --------------------------------------------------------------------------------------
# windows over one long paragraph


def _last_in(points: list[int], lo: int, hi: int) -> int | None:
    """The largest point in [lo, hi], if any (``points`` sorted)."""
    i = bisect_right(points, hi)
    return points[i - 1] if i and points[i - 1] >= lo else None


def _nearest_in(points: list[int], target: int, lo: int, hi: int) -> int | None:
    """The point in [lo, hi] nearest to ``target`` (the lower one on a tie), if any."""
    best = None
    for point in points[bisect_left(points, lo):bisect_right(points, hi)]:
        if best is None or abs(point - target) < abs(best - target):
            best = point
    return best


def _windows(n: int, starts: list[int], config: ChunkConfig) -> list[_Span]:
    """Word ranges covering words 0..n of one paragraph, each at most ``config.words`` long.

    A window ends at the last sentence start in its second half, else at the size limit; the
    next window starts at the sentence start nearest to ``overlap`` words before that end (the
    actual overlap stays between half and twice ``overlap``), else exactly ``overlap`` words
    before it. Every window starts after the one before and no later than its end, and ends
    after it, so words are never skipped and the loop always ends. A last window that would be
    shorter than ``min_words`` starts earlier instead, sharing more with the one before it.
    """
    words, overlap = config.words, config.overlap
    windows: list[_Span] = []
    a = 0
    previous_end = 0
    while n - a > words:
        # past the previous end too, so that no window lies inside the one before it
        b = _last_in(starts, max(a + words // 2, previous_end) + 1, a + words)
        if b is None:
            b = a + words
        windows.append((a, b))
        previous_end = b
        nxt = _nearest_in(starts, b - overlap, max(a + 1, b - 2 * overlap), b - (overlap + 1) // 2)
        if nxt is None:
            nxt = max(a + 1, b - overlap)
        if n - nxt < config.min_words:
            lo = max(a + 1, n - words)
            nxt = _last_in(starts, lo, n - config.min_words)
            if nxt is None:
                nxt = max(lo, n - config.min_words)
        a = nxt
    windows.append((a, n))
    return windows


# --------------------------------------------------------------------------------------
# sections -> passages

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _merge_small(pieces: list[tuple[int, int, bool]], config: ChunkConfig) -> list[_Span]:
    """Merge groups of whole paragraphs under ``min_words`` into a neighbour.

    Into the previous passage when there is one, as a trailing remark belongs to what it
    follows; into the next one when the small group starts the section or comes right
    before a split paragraph, as it then reads as that paragraph's heading. Merged passages
    stay under ``words + min_words`` words, so a merge is refused only after the previous
    passage has already grown past ``words``.
    """
    cap = config.words + max(config.min_words - 1, 0)
    merged: list[_Span] = []
    carry: int | None = None  # start of a small group waiting for the next piece
    for i, (a, b, whole) in enumerate(pieces):
        if carry is not None:
            a, carry = carry, None
        has_next = i + 1 < len(pieces)
        if whole and b - a < config.min_words:
            heading = has_next and not pieces[i + 1][2]
            if merged and not heading and b - merged[-1][0] <= cap:
                merged[-1] = (merged[-1][0], b)
                continue
            if has_next:
                carry = a
                continue
        merged.append((a, b))
    return merged


def _chunk_section(text: str, start: int, end: int, config: ChunkConfig) -> list[_Span]:
    """Character spans of the passages of one section, in order."""
    words: list[_Span] = []
    paragraphs: list[_Span] = []  # word ranges
    bounds = [start]
    for match in _PARAGRAPH_BREAK.finditer(text, start, end):
        bounds += match.span()
    bounds.append(end)
    for a, b in zip(bounds[::2], bounds[1::2], strict=True):
        first = len(words)
        words += _words(text, a, b)
        if len(words) > first:
            paragraphs.append((first, len(words)))

    pieces: list[tuple[int, int, bool]] = []  # word ranges; True: whole paragraphs
    pack: _Span | None = None
    for a, b in paragraphs:
        if pack is not None and b - pack[0] <= config.words:
            pack = (pack[0], b)
            continue
        if pack is not None:
            pieces.append((*pack, True))
            pack = None
        if b - a <= config.words:
            pack = (a, b)
            continue
        word_index = {w[0]: i for i, w in enumerate(words[a:b])}
        sentence_starts = _sentence_starts(text, words[a][0], words[b - 1][1])
        starts = [word_index[s] for s in sentence_starts if s in word_index]
        pieces += [(a + x, a + y, False) for x, y in _windows(b - a, starts, config)]
    if pack is not None:
        pieces.append((*pack, True))

    return [(words[a][0], words[b - 1][1]) for a, b in _merge_small(pieces, config)]


def _sections(document: Document) -> list[Section]:
    """The document's sections clamped to its text, in text order; the whole text if none."""
    size = len(document.text)
    if not document.sections:
        return [Section(0, size)]
    clamped = []
    for section in document.sections:
        start = min(max(section.start, 0), size)
        end = min(max(section.end, start), size)
        if start < end:
            clamped.append(Section(start, end, section.page))
    return sorted(clamped, key=lambda s: (s.start, s.end))


def passage_id(document: Document, start: int, end: int) -> str:
    """A passage id that survives rebuilds: the first 16 hex digits of sha256 over the
    document id, the span and the sha256 of the passage text.

    Nothing else goes in (no counter, no processing order), so the same content always gets
    the same ids, and an edit changes only the ids of passages whose span or text it changes.
    """
    if not 0 <= start < end <= len(document.text):
        raise ValueError(f"bad passage span [{start}, {end}) for a text of {len(document.text)}")
    key = json.dumps([document.id, start, end, content_hash(document.text[start:end])])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def chunk_document(document: Document, config: ChunkConfig = ChunkConfig()) -> list[Passage]:
    """The passages of ``document`` in text order (see the module docstring for the rules).

    Text outside every section is left out when the document has sections. Overlapping
    sections (not expected, but not refused) could yield the same span twice; it is kept
    once, so that passage ids stay unique.
    """
    text = document.text
    pages: dict[_Span, int | None] = {}
    for section in _sections(document):
        for span in _chunk_section(text, section.start, section.end, config):
            pages.setdefault(span, section.page)
    return [
        Passage(
            id=passage_id(document, start, end),
            document_id=document.id,
            order=order,
            start=start,
            end=end,
            text=text[start:end],
            title=document.title,
            page=pages[(start, end)],
        )
        for order, (start, end) in enumerate(sorted(pages))
    ]
