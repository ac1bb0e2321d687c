"""Masked blocks to tensors: the MLM labels and the flat list of SBO targets.

Masking is redone every epoch (dynamic masking) from a generator seeded by (seed, epoch,
block), so a resumed or multi-process run masks exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .corpus import Block
from .masking import IGNORE, MaskedBlock, MaskingConfig, UnigramSampler, mask_spans, mask_tokens


@dataclass(frozen=True)
class Specials:
    cls: int
    sep: int
    pad: int
    mask: int


def mask_block(block: Block, index: int, seed: int, epoch: int, scheme: str,
               specials: Specials, sampler: UnigramSampler, cfg: MaskingConfig) -> MaskedBlock:
    rng = np.random.default_rng([seed, epoch, index])
    if scheme == "span":
        return mask_spans(block.ids, block.word_starts, rng, specials.mask, sampler, cfg)
    if scheme == "token":
        return mask_tokens(block.ids, rng, specials.mask, sampler, cfg)
    raise ValueError(f"masking must be span or token, got {scheme!r}")


def sbo_spans(masked: MaskedBlock) -> list[tuple[int, int]]:
    """The spans the boundary objective predicts: those whose two boundary tokens are
    block content. As in the reference code, a span at either edge of the block is left to
    the MLM loss alone ([CLS] and [SEP] say nothing about what they border)."""
    n = len(masked.input_ids)
    return [(s, e) for s, e in masked.spans if s > 0 and e < n]


def count_sbo_targets(masked: Iterable[MaskedBlock], max_positions: int) -> int:
    return sum(min(e - s, max_positions) for m in masked for s, e in sbo_spans(m))


def collate(masked: Sequence[MaskedBlock], specials: Specials,
            sbo_max_positions: int) -> dict[str, torch.Tensor]:
    """[CLS] block [SEP], padded to the longest; SBO targets with boundary positions."""
    width = max(len(m.input_ids) for m in masked) + 2
    ids = torch.full((len(masked), width), specials.pad, dtype=torch.long)
    labels = torch.full((len(masked), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(masked), width), dtype=torch.long)
    sbo: list[tuple[int, int, int, int, int]] = []
    for row, m in enumerate(masked):
        n = len(m.input_ids)
        ids[row, 0], ids[row, n + 1] = specials.cls, specials.sep
        ids[row, 1:n + 1] = torch.from_numpy(m.input_ids)
        labels[row, 1:n + 1] = torch.from_numpy(m.labels)
        attention[row, :n + 2] = 1
        for start, end in sbo_spans(m):  # content [start, end) sits at [start + 1, end + 1)
            for t in range(start, min(end, start + sbo_max_positions)):
                sbo.append((row, start, end + 1, t - start, int(m.labels[t])))
    columns = torch.tensor(sbo, dtype=torch.long).reshape(-1, 5).T
    return {"input_ids": ids, "attention_mask": attention, "labels": labels,
            "sbo_row": columns[0], "sbo_left": columns[1], "sbo_right": columns[2],
            "sbo_position": columns[3], "sbo_target": columns[4]}
