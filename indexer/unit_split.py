"""Dense units: what the embedder sees of each passage.

A passage is embedded whole and, when it is longer than `sentence_words`, also in groups
of consecutive sentences of about that many words; its dense score is the best score of its
units (MaxP). Why: a question usually matches one or two sentences, and a single vector for
a 150-word paragraph blurs them with the rest (all-MiniLM-L6-v2 was trained on 128-token
inputs). Measured on the SQuAD collection (bench/retrieval.py): dense recall@5 88.6 ->
93.5 with groups of 35 words, chosen on the train questions.

Units are stored in passage order, so the units of passage row r are one contiguous run.
"""

from __future__ import annotations

import numpy as np

from ..index.records import Passage
from .chunking import count_words, sentence_spans


def sentence_groups(text: str, words: int) -> list[tuple[int, int]]:
    """(start, end) of runs of whole sentences of at most `words` words (a longer sentence
    is a run of its own); none when the text fits in one."""
    if words <= 0 or count_words(text) <= words:
        return []
    groups: list[tuple[int, int]] = []
    start = end = None
    size = 0
    for a, b in sentence_spans(text):
        n = count_words(text[a:b])
        if start is not None and size + n > words:
            groups.append((start, end))
            start = None
        if start is None:
            start, size = a, 0
        end, size = b, size + n
    if start is not None:
        groups.append((start, end))
    return groups if len(groups) > 1 else []


def dense_units(passages: list[Passage], words: int) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(title, text) of every unit, in passage order, and the passage (0-based position in
    `passages`) each belongs to."""
    units: list[tuple[str, str]] = []
    owners: list[int] = []
    for i, p in enumerate(passages):
        pieces = [p.text] + [p.text[a:b] for a, b in sentence_groups(p.text, words)]
        units += [(p.title, piece) for piece in pieces]
        owners += [i] * len(pieces)
    return units, np.asarray(owners, np.int64)


