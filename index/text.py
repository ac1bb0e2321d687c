"""Lexical tokenization for BM25: the same function must run over passages and questions.

BM25 matches query terms to document terms by exact string equality, so every choice here is
about making equal words equal strings (case, accents, compatibility forms, punctuation) and
about keeping words that carry no evidence (stop words) from adding noise to the scores.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["ENGLISH_STOP_WORDS", "tokenize"]

# NLTK's English stop-word list (179 words), written out so that no dependency is needed, with
# two changes that follow from tokenize() splitting on apostrophes:
# - the forms with an apostrophe ("don't", "you're", ...) are left out: no token contains one,
#   and their pieces ("don", "t", "re", ...) are in the list already;
# - "won" (NLTK's piece of "won't") is kept as a word: it is the past tense of "win" and carries
#   evidence in questions such as "Which team won Super Bowl 50?".
ENGLISH_STOP_WORDS: frozenset[str] = frozenset({
    "a", "about", "above", "after", "again", "against", "ain", "all", "am", "an", "and", "any",
    "are", "aren", "as", "at", "be", "because", "been", "before", "being", "below", "between",
    "both", "but", "by", "can", "couldn", "d", "did", "didn", "do", "does", "doesn", "doing",
    "don", "down", "during", "each", "few", "for", "from", "further", "had", "hadn", "has",
    "hasn", "have", "haven", "having", "he", "her", "here", "hers", "herself", "him", "himself",
    "his", "how", "i", "if", "in", "into", "is", "isn", "it", "its", "itself", "just", "ll",
    "m", "ma", "me", "mightn", "more", "most", "mustn", "my", "myself", "needn", "no", "nor",
    "not", "now", "o", "of", "off", "on", "once", "only", "or", "other", "our", "ours",
    "ourselves", "out", "over", "own", "re", "s", "same", "shan", "she", "should", "shouldn",
    "so", "some", "such", "t", "than", "that", "the", "their", "theirs", "them", "themselves",
    "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until",
    "up", "ve", "very", "was", "wasn", "we", "were", "weren", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "wouldn", "y", "you", "your", "yours",
    "yourself", "yourselves",
})

# Scripts written without spaces between words: each character is a token, as BERT's basic
# tokenizer does for Han, because a run of them would otherwise be one long, unmatchable
# "word". Han ideographs (with extensions and compatibility blocks), Hiragana and Katakana.
# Hangul is left out on purpose: Korean separates words with spaces.
CJK_RANGES = (
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK unified ideographs extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0002ebef"  # extensions B-F
    "\U0002f800-\U0002fa1f"  # compatibility ideographs supplement
    "\U00030000-\U0003134f"  # extension G
)
# One CJK character, or a run of letters and digits that are not CJK. `[^\W_]` is "a word
# character but not the underscore", i.e. a Unicode letter or digit, so every other character
# (punctuation, symbols, spaces, underscores) separates tokens.
_TOKEN_RE = re.compile(rf"[{CJK_RANGES}]|[^\W_{CJK_RANGES}]+")


def _strip_accents(text: str) -> str:
    """NFKD-decompose and drop combining marks ("é" -> "e" + U+0301 -> "e").

    NFC at the end recomposes what decomposition split but no mark was dropped from (Hangul
    syllables decompose into conjoining jamo), so tokens stay readable, e.g. in the saved
    vocabulary.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped)


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lower-cased, accent-free word tokens without English stop words.

    Steps, and why:

    1. Lower-case: "Paris" at the start of a question and "paris" in a title are one word.
    2. Unicode NFKD and drop combining marks (non-ASCII text only): "Café" and "cafe", or
       "Ｆｕｌｌ" and "full", "ﬁ" and "fi", are written both ways in questions and passages.
       The result is lower-cased again because decomposition can produce capitals ("ℌ" -> "H").
    3. Split on every character that is not a Unicode letter or digit (punctuation,
       apostrophes, hyphens, underscores, symbols): "Beyoncé's" -> "beyonce", "s"; digits are
       kept because years and numbers are strong evidence ("1996", "50").
    4. Han, Hiragana and Katakana characters become one token each: those scripts do not mark
       word boundaries, and single characters still match between question and passage.
    5. Drop English stop words (:data:`ENGLISH_STOP_WORDS`): they occur in nearly every
       passage, so they only add noise and cost to the scores.

    Deterministic and free of state: the same text always gives the same tokens, which the
    index relies on (passages at build time, questions at query time).
    """
    text = text.lower()
    if not text.isascii():
        text = _strip_accents(text).lower()
    return [tok for tok in _TOKEN_RE.findall(text) if tok not in ENGLISH_STOP_WORDS]


def searchable_text(title: str, text: str) -> str:
    """What BM25 and the embedder see: the title helps both find the passage."""
    return f"{title}\n{text}" if title else text
