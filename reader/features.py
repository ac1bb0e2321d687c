"""Question + context windows for an extractive reader.

A context longer than the model's input is cut into overlapping windows; every context
token keeps its character span in the original context so that predicted token spans
map back to exact character offsets. Windows are stored unpadded: padding happens per
batch (see batching.py), which is where most of the reader's speed comes from.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast

Span = tuple[int, int]


@dataclass(frozen=True)
class FeatureConfig:
    max_seq_length: int = 384
    doc_stride: int = 128  # tokens shared by consecutive windows, as in Hugging Face's recipes
    max_query_length: int = 64

    def __post_init__(self) -> None:
        room = self.max_seq_length - self.max_query_length - 3  # [CLS] q [SEP] c [SEP]
        if room < 8:
            raise ValueError(
                f"max_seq_length {self.max_seq_length} leaves {room} context tokens after a "
                f"{self.max_query_length}-token question; raise it or lower max_query_length"
            )
        if not 0 <= self.doc_stride < room:
            raise ValueError(
                f"doc_stride must be in [0, {room}) for max_seq_length {self.max_seq_length} "
                f"and max_query_length {self.max_query_length}, got {self.doc_stride}"
            )


@dataclass
class Features:
    """Windows of many examples, column by column (a window is one model input)."""

    input_ids: list[list[int]] = field(default_factory=list)
    token_type_ids: list[list[int]] = field(default_factory=list)
    example_index: list[int] = field(default_factory=list)
    # Character span in the context for context tokens, None for question/special tokens.
    offsets: list[list[Span | None]] = field(default_factory=list)
    start_positions: list[int] = field(default_factory=list)  # training only; 0 is [CLS]
    end_positions: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    @property
    def has_labels(self) -> bool:
        return bool(self.start_positions)

    def subset(self, indices: Sequence[int]) -> Features:
        """The windows `indices` (example indices are kept as they are)."""
        def pick(column: list) -> list:
            return [column[i] for i in indices] if column else []

        return Features(
            input_ids=pick(self.input_ids), token_type_ids=pick(self.token_type_ids),
            example_index=pick(self.example_index), offsets=pick(self.offsets),
            start_positions=pick(self.start_positions), end_positions=pick(self.end_positions),
        )


def truncate_question(tokenizer: PreTrainedTokenizerFast, question: str, max_tokens: int) -> str:
    """Cut a question to at most `max_tokens` tokens, at a token boundary."""
    question = question.strip()
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if len(offsets) <= max_tokens:
        return question
    return question[: offsets[max_tokens - 1][1]]


def extend_over_combining(text: str, end: int) -> int:
    """Move a span end past combining marks that the tokenizer normalised away.

    Uncased BERT tokenizers strip accents, so the token for "cafe\u0301" ends before the
    combining acute accent; without this the answer text would lose its accent.
    """
    while end < len(text) and unicodedata.combining(text[end]):
        end += 1
    return end


def _token_span(offsets: Sequence[Span | None], start_char: int, end_char: int) -> Span | None:
    """Token indices of the first and last context tokens covering [start_char, end_char)."""
    context = [i for i, span in enumerate(offsets) if span is not None]
    if not context:
        return None
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return None  # the answer is not wholly inside this window
    start = first
    while start <= last and offsets[start][1] <= start_char:
        start += 1
    end = last
    while end >= start and offsets[end][0] >= end_char:
        end -= 1
    if start > end:
        return None
    return start, end


def build_features(
    tokenizer: PreTrainedTokenizerFast,
    questions: Sequence[str],
    contexts: Sequence[str],
    config: FeatureConfig,
    answers: Sequence[Span | None] | None = None,
    *,
    chunk_size: int = 512,
    progress: bool = False,
) -> Features:
    """Tokenize question/context pairs into windows.

    With `answers` (character start/end of the gold answer, None when unanswerable) each
    window gets start/end token labels, pointing at [CLS] (index 0) when the answer is
    missing or not wholly inside the window.
    """
    if len(questions) != len(contexts):
        raise ValueError("questions and contexts differ in length")
    if answers is not None and len(answers) != len(questions):
        raise ValueError("answers and questions differ in length")
    if tokenizer.padding_side != "right":
        raise ValueError("the reader expects a tokenizer that pads on the right")
    features = Features()
    bar = tqdm(total=len(questions), desc="windows", unit="q", disable=not progress)
    for lo in range(0, len(questions), chunk_size):
        hi = min(lo + chunk_size, len(questions))
        qs = [truncate_question(tokenizer, q, config.max_query_length) for q in questions[lo:hi]]
        enc = tokenizer(
            qs,
            list(contexts[lo:hi]),
            truncation="only_second",
            max_length=config.max_seq_length,
            stride=config.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_token_type_ids=True,
        )
        for i, ids in enumerate(enc["input_ids"]):
            example = lo + enc["overflow_to_sample_mapping"][i]
            sequence_ids = enc.sequence_ids(i)
            offsets = [
                tuple(span) if sid == 1 else None
                for span, sid in zip(enc["offset_mapping"][i], sequence_ids, strict=True)
            ]
            features.input_ids.append(ids)
            features.token_type_ids.append(enc["token_type_ids"][i])
            features.example_index.append(example)
            features.offsets.append(offsets)
            if answers is not None:
                answer = answers[example]
                span = _token_span(offsets, *answer) if answer is not None else None
                features.start_positions.append(span[0] if span else 0)
                features.end_positions.append(span[1] if span else 0)
        bar.update(hi - lo)
    bar.close()
    return features
