"""Which tokens a pretraining block hides, and what it shows in their place.

Span masking follows SpanBERT (Joshi et al., 2020) and its reference code: span lengths in
whole words from a geometric distribution (p = 0.2) clipped at 10 words, anchored at the
start of a random token's word, added until 15% of the subword tokens are hidden; overlapping or
touching spans are merged; each merged span is shown as all [MASK] (80%), as random
tokens drawn from the corpus unigram distribution (10%), or unchanged (10%).

One deliberate difference from the reference code: it cuts the last span mid-word when the
budget runs out, which leaves half a word visible; here a span always ends at a word
boundary, so the masked share overshoots 15% by at most one word.

Token masking is the BERT baseline for ablations: the same number of subword tokens,
chosen independently, each shown as [MASK] / random / unchanged on its own.

Positions here are within a block's content (no [CLS] or [SEP]); spans are half-open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

IGNORE = -100  # label of the tokens that are not predicted (PyTorch's cross-entropy default)


@dataclass(frozen=True)
class MaskingConfig:
    ratio: float = 0.15
    geometric_p: float = 0.2
    max_span_words: int = 10
    mask_share: float = 0.8  # of the masked spans (tokens, for token masking): all [MASK]
    random_share: float = 0.1  # random tokens; the rest are left unchanged


@dataclass
class MaskedBlock:
    """A block as the model sees it, the labels it must predict, and the merged spans."""

    input_ids: np.ndarray
    labels: np.ndarray  # original id where masked, IGNORE elsewhere
    spans: list[tuple[int, int]]  # merged masked spans [start, end); token masking: one per token


def span_length_distribution(p: float, max_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Span lengths 1..max_words and their clipped geometric probabilities."""
    lengths = np.arange(1, max_words + 1)
    probs = p * (1 - p) ** (lengths - 1)
    return lengths, probs / probs.sum()


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans with the overlapping and touching ones joined."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


class UnigramSampler:
    """Random replacement tokens, drawn as often as they occur in the corpus."""

    def __init__(self, counts: np.ndarray):
        total = counts.sum()
        if total <= 0:
            raise ValueError("the corpus has no tokens to draw replacements from")
        self.ids = np.flatnonzero(counts)
        self.cumulative = np.cumsum(counts[self.ids]) / total

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        picks = np.searchsorted(self.cumulative, rng.random(n), side="right")
        return self.ids[np.minimum(picks, len(self.ids) - 1)]


def _word_bounds(word_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = np.flatnonzero(word_starts)
    ends = np.append(starts[1:], len(word_starts))
    return starts, ends


def _show(ids: np.ndarray, positions: np.ndarray, how: float, mask_id: int,
          sampler: UnigramSampler, rng: np.random.Generator, cfg: MaskingConfig) -> None:
    if how < cfg.mask_share:
        ids[positions] = mask_id
    elif how < cfg.mask_share + cfg.random_share:
        ids[positions] = sampler.draw(rng, len(positions))


def choose_spans(word_starts: np.ndarray, budget: int, rng: np.random.Generator,
                 cfg: MaskingConfig = MaskingConfig()) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Which tokens to mask, and the spans as drawn (before merging).

    Each span: a length in words from the clipped geometric distribution, anchored at the
    start of a random token's word not yet masked (so longer words are likelier anchors, as
    in the reference code); it grows word by word until it has its length, reaches the end
    of the block, or the budget is spent.
    """
    word_starts = np.array(word_starts, dtype=bool)  # a copy: the first token starts a word
    n = len(word_starts)
    if n:
        word_starts[0] = True
    starts, ends = _word_bounds(word_starts)
    word_of = np.cumsum(word_starts) - 1  # the word each token belongs to
    lengths, probs = span_length_distribution(cfg.geometric_p, cfg.max_span_words)
    cumulative = np.cumsum(probs)
    masked = np.zeros(n, dtype=bool)
    count, spans, free_words = 0, [], len(starts)
    while count < budget and free_words:
        length = int(lengths[min(np.searchsorted(cumulative, rng.random()), len(lengths) - 1)])
        word = int(word_of[rng.integers(n)])  # as the reference: a random token's word
        if masked[starts[word]]:
            continue
        first = word
        while word < len(starts) and word - first < length and count < budget:
            if not masked[starts[word]]:  # whole words only: a word is masked all or none
                count += int(ends[word] - starts[word])
                masked[starts[word]:ends[word]] = True
                free_words -= 1
            word += 1
        spans.append((int(starts[first]), int(ends[word - 1])))
    return masked, spans


def mask_spans(ids: np.ndarray, word_starts: np.ndarray, rng: np.random.Generator,
               mask_id: int, sampler: UnigramSampler,
               cfg: MaskingConfig = MaskingConfig()) -> MaskedBlock:
    """SpanBERT's span masking of one block's content tokens."""
    masked, spans = choose_spans(word_starts, math.ceil(len(ids) * cfg.ratio), rng, cfg)
    spans = merge_spans(spans)
    shown = ids.copy()
    labels = np.where(masked, ids, IGNORE)
    for start, end in spans:
        _show(shown, np.arange(start, end), rng.random(), mask_id, sampler, rng, cfg)
    return MaskedBlock(shown, labels, spans)


def mask_tokens(ids: np.ndarray, rng: np.random.Generator, mask_id: int,
                sampler: UnigramSampler, cfg: MaskingConfig = MaskingConfig()) -> MaskedBlock:
    """BERT's token masking with the same budget: the ablation baseline."""
    n = len(ids)
    chosen = np.sort(rng.choice(n, size=min(n, math.ceil(n * cfg.ratio)), replace=False))
    shown = ids.copy()
    labels = np.full(n, IGNORE, dtype=ids.dtype)
    labels[chosen] = ids[chosen]
    for position in chosen:
        _show(shown, np.array([position]), rng.random(), mask_id, sampler, rng, cfg)
    return MaskedBlock(shown, labels, [(int(p), int(p) + 1) for p in chosen])
