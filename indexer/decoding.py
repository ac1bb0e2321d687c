"""Which encoding an undeclared, non-UTF-8 text file is in, judged by what its letters look
like once decoded.

Why not take charset-normalizer's first guess: on Western European text it often ranks a
Baltic or Central European code page level with (or above) cp1252, and every single-byte
code page decodes such bytes without an error, so the wrong reading is silent: latin-1
"signé à Genève par Anaïs" comes back from cp1257 as "signé ą Genčve par Anaļs". What gives
a wrong reading away is its letters: a real text's accented letters come from one
language's alphabet (French é à è ï ç), a misreading scatters letters of several (Lithuanian
ą, Czech č, Latvian ļ) and drops symbols into the middle of words (Polish cp1250 read as
cp1252: "Za¿ó³æ"), mixes scripts inside words ("signй а Genиve") or flips case mid-word
(KOI8-R read as cp1251: "рТЙЧЕФ").

The rule: decode with every candidate (charset-normalizer's matches and the most common
legacy code pages), score each reading's implausibility (the share of its non-ASCII
characters that break those patterns), and keep the least implausible; on a tie the more
common encoding wins (cp1252 before cp1250 before cp1251, then charset-normalizer's order),
which is what decides short texts, where several readings look equally fine. When even the
best reading is implausible (`plausible`), there is no reading: the caller skips the file
rather than index garbage.

A large file is judged on a sample (`_sample`: its first 256 KB and three more stretches
spread over it, each cut after a newline or space), then decoded once, strictly, with the
winner, or with the next candidate should the winner fail somewhere outside the sample.
Decoding and scoring the whole file with each of some twenty candidates took 2-4 s per
5 MB, so a 50 MB file could run past the parse worker's 30 s limit; now any size costs
under a second (0.2-0.6 s measured here for 5 and for 50 MB) plus one decoding.

UTF-16 without a BOM is told by where its NUL bytes fall (`decode_utf16`). Chinese and
Japanese readings of each other's bytes often look plausible to these rules (no spaces, no
accents, one script group); among equally plausible ones charset-normalizer's order decides.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache

from charset_normalizer import from_bytes

# Most used first: a tie between equally plausible readings goes to the earlier one. latin-1
# decodes what cp1252 does not (C1 controls), which scoring then counts against it.
PREFERRED = ("cp1252", "latin-1", "cp1250", "cp1251")
MAX_IMPLAUSIBLE = 0.5  # a reading with more odd than ordinary non-ASCII characters is garbage
MIN_EVIDENCE = 10  # ... counted over at least this many: one odd "a×b" is no garbage
_SCORED_CHARS = 20_000  # non-ASCII characters scored: enough to tell, cheap on 50 MB
_SAMPLE_PIECE = 256 * 1024  # bytes in each stretch of a large file's sample
_SAMPLE_PIECES = 4  # the first stretch, and three more spread evenly to the end

# The accented (non-ASCII) letters of languages written in the legacy single-byte code
# pages, lower case (upper case is derived). Subsets of another entry are left out.
_LANGUAGES: dict[str, str] = {
    "French": "àâæçéèêëîïôœùûüÿ",
    "German": "äöüß",
    "Spanish": "áéíñóúü",
    "Portuguese": "àáâãçéêíóôõú",
    "Italian": "àèéìíîòóùú",
    "Catalan": "àçèéíïòóúü",
    "Dutch": "áäèéëíïóöúü",
    "Danish/Norwegian": "åæøéèêóòô",
    "Swedish/Finnish": "åäöéšž",
    "Icelandic": "áæðéíóöúýþ",
    "Albanian": "çë",
    "Polish": "ąćęłńóśźż",
    "Czech": "áčďéěíňóřšťúůýž",
    "Slovak": "áäčďéíĺľňóôŕšťúýž",
    "Hungarian": "áéíóöőúüű",
    "Croatian/Slovene/Bosnian": "čćđšž",
    "Romanian": "ăâîșțşţ",
    "Lithuanian": "ąčęėįšųūž",
    "Latvian": "āčēģīķļņšūž",
    "Estonian": "äõöüšž",
    "Turkish": "âçğıîöşüİ",
    "Maltese": "àċèġħìòùż",
}
_ALPHABETS: tuple[frozenset[str], ...] = tuple(
    frozenset(letters + letters.upper()) for letters in _LANGUAGES.values()
)
_NEUTRAL = frozenset("ªºµ")  # ordinal indicators and micro sign: every Western text may use them
# may stand between two letters: l’homme, col·lecció, Brand™Name
_JOINERS = frozenset("’‘ʼ·\xad…™®©")
_JOINING_CATEGORIES = frozenset({"Pd", "Pi", "Pf", "Mn", "Mc", "Me", "Cf"})
_BROKEN_CATEGORIES = frozenset({"Cc", "Co", "Cn", "Cs"})  # C1 controls, private use, unassigned
_CJK_NAMES = frozenset({"CJK", "HIRAGANA", "KATAKANA", "BOPOMOFO", "FULLWIDTH", "HALFWIDTH",
                        "IDEOGRAPHIC"})
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# three or more letters in a row (Icelandic has "þá") without an ASCII one among them: the
# only words the last rule of `_oddities` can count (finding just those keeps it fast on
# mostly-ASCII text)
_NON_ASCII_WORD = re.compile(r"(?<![^\W\d_])[^\W\d_a-zA-Z]{3,}(?![^\W\d_])")


def guess_legacy(data: bytes) -> tuple[str, str] | None:
    """(text, encoding) of the most plausible reading of `data`, or None when every reading is
    implausible (an encoding no candidate covers, or not text at all).

    The candidates are ranked on a sample of `data` (all of it when it is small); the best
    one that decodes the whole of `data` strictly gives the text."""
    sample = _sample(data)
    library = [match.encoding for match in from_bytes(b"\n".join(sample))]
    ranked: list[tuple[tuple[float, int, int], str, bool]] = []
    for name in dict.fromkeys([*PREFERRED, *library]):
        try:
            text = "\n".join(piece.decode(name) for piece in sample)
        except (UnicodeDecodeError, LookupError):
            continue
        odd, scored = _oddities(text)
        key = (
            round(_share(odd, scored), 6),
            PREFERRED.index(name) if name in PREFERRED else len(PREFERRED),
            library.index(name) if name in library else len(library),
        )
        ranked.append((key, name, _enough(odd, scored)))
    for _, name, readable in sorted(ranked):
        try:
            text = data.decode(name)
        except UnicodeDecodeError:  # a byte outside the sample that `name` has no letter for
            continue
        return (text, name) if readable else None
    return None


def _sample(data: bytes) -> list[bytes]:
    """What `guess_legacy` judges `data` by: all of it up to `_SAMPLE_PIECES` x
    `_SAMPLE_PIECE` bytes, else that many stretches of it, the first at the start and the
    last at the end, each cut just after a newline (or a space) at both ends. No legacy
    multi-byte encoding (Shift JIS, GBK, Big5, EUC) uses those bytes inside a character,
    so every candidate reads each stretch as it would read it within the whole. A file
    without such a byte in a stretch is judged on the others, or whole when there are none."""
    if len(data) <= _SAMPLE_PIECE * _SAMPLE_PIECES:
        return [data]
    last = len(data) - _SAMPLE_PIECE
    pieces: list[bytes] = []
    for i in range(_SAMPLE_PIECES):
        start = last * i // (_SAMPLE_PIECES - 1)
        end = start + _SAMPLE_PIECE
        if start > 0 and (start := _cut(data, start, end, first=True)) < 0:
            continue
        if end < len(data) and (end := _cut(data, start, end, first=False)) < 0:
            continue
        if start < end:
            pieces.append(data[start:end])
    return pieces or [data]


def _cut(data: bytes, start: int, end: int, *, first: bool) -> int:
    """The position just after the first (or last) newline in data[start:end], else after
    the first (or last) space; -1 when there is neither."""
    for separator in (b"\n", b" "):
        at = data.find(separator, start, end) if first else data.rfind(separator, start, end)
        if at >= 0:
            return at + 1
    return -1


def plausible(text: str) -> bool:
    """Whether `text` reads as text at all: at most `MAX_IMPLAUSIBLE` of its non-ASCII
    characters odd, counted over at least `MIN_EVIDENCE` of them."""
    return _enough(*_oddities(text))


def decode_utf16(data: bytes) -> str | None:
    """The text of UTF-16 `data` without a BOM, or None when neither byte order reads
    strictly and plausibly (binary data, an odd length).

    Nearly every text has characters below U+0100 (spaces, newlines, digits, Latin letters),
    whose high byte is NUL: so the NULs of UTF-16 fall mostly on one side of the byte pairs,
    the high byte's. That decides between the byte orders when both read plausibly (ASCII
    read the wrong way round is a run of CJK ideographs, plausible to `implausibility`);
    otherwise the less implausible order wins (CJK text read the wrong way round scatters
    over scripts and unassigned code points). A reading without a single space or line
    break is taken for binary: those are where a text's NULs come from."""
    if len(data) < 2 or len(data) % 2:
        return None
    sample = data[: 1 << 16]
    little = sample[1::2].count(0) >= sample[0::2].count(0)
    orders = ("utf-16-le", "utf-16-be") if little else ("utf-16-be", "utf-16-le")
    best: tuple[tuple[float, int], str] | None = None
    for rank, name in enumerate(orders):
        try:
            text = data.decode(name)
        except UnicodeDecodeError:
            continue
        key = (round(implausibility(text), 6), rank)
        if best is None or key < best[0]:
            best = (key, text)
    if best is None or not plausible(best[1]) or not any(c.isspace() for c in best[1]):
        return None
    return best[1]


def implausibility(text: str) -> float:
    """The share (0..1) of the non-ASCII characters of `text` that a real text rarely has
    (see `_oddities`); 0 for text without any."""
    return _share(*_oddities(text))


def _share(odd: int, scored: int) -> float:
    return min(1.0, odd / scored) if scored else 0.0


def _enough(odd: int, scored: int) -> bool:
    """At most `MAX_IMPLAUSIBLE` of the scored characters odd, over at least `MIN_EVIDENCE`."""
    return odd <= MAX_IMPLAUSIBLE * max(scored, MIN_EVIDENCE)


def _oddities(text: str) -> tuple[int, int]:
    """(odd, scored): of the `scored` non-ASCII characters (the first `_SCORED_CHARS` of
    them, wherever they are in `text`), how many are what a real text rarely has: control or
    unassigned characters, symbols between two letters, a letter next to a letter of another
    script, an upper-case letter right after a lower-case one, accented Latin letters outside
    the one language alphabet that covers most of them, and Latin words of three or more letters
    without a single unaccented one (Russian read as cp1252: "Ïðèâåò"; real words have one).
    ASCII and whitespace are not scored: they read the same in every candidate encoding."""
    scored = odd = 0
    end = len(text)
    latin: Counter[str] = Counter()
    scripts: Counter[str] = Counter()
    for match in _NON_ASCII.finditer(text):
        char, i = match.group(), match.start()
        if char.isspace() or char in _NEUTRAL:
            continue
        if scored == _SCORED_CHARS:
            end = i
            break
        scored += 1
        before = text[i - 1] if i else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        category = unicodedata.category(char)
        if category in _BROKEN_CATEGORIES:
            odd += 1
        elif _is_letter(char):
            script = _script(char)
            if script == "Latin":
                latin[char] += 1
            else:
                scripts[script] += 1
            if (
                _other_script(before, script)
                or _other_script(after, script)
                or (char.isupper() and before.islower())
            ):
                odd += 1
        elif (
            category not in _JOINING_CATEGORIES
            and char not in _JOINERS
            and _in_word(before)
            and _in_word(after)
        ):
            odd += 1
    covered = max(
        [sum(n for c, n in latin.items() if c in alphabet) for alphabet in _ALPHABETS]
        + list(scripts.values())
    )
    odd += sum(latin.values()) + sum(scripts.values()) - covered
    for word in _NON_ASCII_WORD.finditer(text, 0, end):
        letters = word.group()
        if all(_script(c) == "Latin" for c in letters):
            odd += len(letters)
    return odd, scored


@lru_cache(maxsize=8192)
def _is_letter(char: str) -> bool:
    """A letter, not counting the spacing modifier letters (ˆ ˇ), which legacy code pages use
    as stand-alone accents and which appear mostly in misreadings."""
    return unicodedata.category(char).startswith("L") and not "\u02b0" <= char <= "\u02ff"


@lru_cache(maxsize=8192)
def _script(char: str) -> str:
    """The writing system of a letter; Chinese and Japanese count as one (Japanese mixes Han
    and kana inside words), and so does every Latin letter."""
    if char < "\u0250" or "\u1e00" <= char < "\u1f00":
        return "Latin"
    word = unicodedata.name(char, "?").split(" ", 1)[0].split("-", 1)[0]
    if word == "LATIN":
        return "Latin"
    return "CJK" if word in _CJK_NAMES else word


def _in_word(char: str) -> bool:
    """A letter of a script that separates words with spaces, so that punctuation between
    two of them is odd; Chinese and Japanese punctuation stands between letters."""
    return _is_letter(char) and _script(char) != "CJK"


def _other_script(neighbour: str, script: str) -> bool:
    return _is_letter(neighbour) and _script(neighbour) != script
