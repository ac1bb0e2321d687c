"""Text for pretraining, cut into single-segment blocks one document at a time.

The text comes from a SpanQA index (its passages, put back together per document without
the chunker's overlaps) or from files and folders read by the indexer's own readers, so
that pretraining sees exactly the company's documents. Blocks never mix documents: as in
SpanBERT, a block is [CLS] + up to max_length - 2 consecutive tokens of one document +
[SEP], cut at a word start; only a document's last block is shorter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast

from ..index.layout import IndexDir
from ..index.records import Skipped
from ..index.store import open_db
from ..indexer.formats import iter_documents

log = logging.getLogger(__name__)


@dataclass
class Block:
    """Content tokens of one block (no special tokens) and which of them start a word."""

    ids: np.ndarray
    word_starts: np.ndarray
    document: str


def read_paragraphs(sources: Iterable[str | Path]) -> Iterator[tuple[str, list[str]]]:
    """(document id, paragraphs) for every document in the given indexes, files or folders."""
    files: list[Path] = []
    for source in sources:
        if IndexDir(source).exists():
            yield from _index_paragraphs(IndexDir(source))
        else:
            files.append(Path(source))
    if files:
        yield from _file_paragraphs(files)


def _index_paragraphs(index: IndexDir) -> Iterator[tuple[str, list[str]]]:
    """Passages grouped by document, each contributing only the text not already covered
    by the passage before it (the chunker overlaps neighbouring passages)."""
    db = open_db(index.current())
    rows = db.query('select document_id, start, "end", text from passages '
                    "order by document_id, start")
    document, paragraphs, covered = None, [], 0
    for row in rows:
        if row["document_id"] != document:
            if paragraphs:
                yield document, paragraphs
            document, paragraphs, covered = row["document_id"], [], 0
        skip = max(0, covered - row["start"])
        if skip < len(row["text"]) and row["text"][skip:].strip():
            paragraphs.append(row["text"][skip:])
        covered = max(covered, row["end"])
    if paragraphs:
        yield document, paragraphs


def _file_paragraphs(paths: list[Path]) -> Iterator[tuple[str, list[str]]]:
    for item in iter_documents(paths):
        if isinstance(item, Skipped):
            log.warning("skipped %s: %s", item.path, item.reason)
            continue
        sections = item.sections or []
        texts = ([item.text[s.start:s.end] for s in sections] if sections
                 else item.text.split("\n\n"))
        paragraphs = [t for t in texts if t.strip()]
        if paragraphs:
            yield item.id, paragraphs


def _tokenize(tokenizer: PreTrainedTokenizerFast, text: str) -> tuple[list[int], list[bool]]:
    encoding = tokenizer(text, add_special_tokens=False, verbose=False)
    words = encoding.word_ids()
    starts = [w is not None and (i == 0 or words[i - 1] != w) for i, w in enumerate(words)]
    return encoding["input_ids"], starts


def pack_document(tokenizer: PreTrainedTokenizerFast, document: str, paragraphs: list[str],
                  max_length: int) -> list[Block]:
    """Consecutive blocks of up to max_length - 2 tokens of the document's running text,
    each cut at a word start (mid-word only for a word longer than a whole block)."""
    room = max_length - 2
    ids: list[int] = []
    starts: list[bool] = []
    for paragraph in paragraphs:
        p_ids, p_starts = _tokenize(tokenizer, paragraph)
        if p_starts:
            p_starts[0] = True  # a paragraph starts a word, whatever the tokenizer says
        ids.extend(p_ids)
        starts.extend(p_starts)
    blocks: list[Block] = []
    lo = 0
    while lo < len(ids):
        hi = min(lo + room, len(ids))
        if hi < len(ids):
            hi = next((i for i in range(hi, lo, -1) if starts[i]), hi)
        blocks.append(Block(np.array(ids[lo:hi], dtype=np.int64), np.array(starts[lo:hi]),
                            document))
        blocks[-1].word_starts[0] = True
        lo = hi
    return blocks


def build_blocks(tokenizer: PreTrainedTokenizerFast, sources: Iterable[str | Path],
                 max_length: int, progress: bool = True) -> list[Block]:
    blocks: list[Block] = []
    documents = 0
    for document, paragraphs in tqdm(read_paragraphs(sources), desc="documents", unit="doc",
                                     disable=not progress):
        blocks.extend(pack_document(tokenizer, document, paragraphs, max_length))
        documents += 1
    if not blocks:
        raise ValueError("no text to pretrain on: the sources held no readable documents")
    tokens = sum(len(b.ids) for b in blocks)
    log.info("pretraining text: %d documents, %d blocks, %d tokens", documents, len(blocks),
             tokens)
    return blocks


def unigram_counts(blocks: list[Block], vocab_size: int,
                   exclude: Iterable[int] = ()) -> np.ndarray:
    """How often each token occurs in the corpus: the distribution random replacements
    are drawn from (`exclude`: special tokens, which a document may spell out as text)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for block in blocks:
        np.add.at(counts, block.ids, 1)
    counts[list(exclude)] = 0
    return counts
