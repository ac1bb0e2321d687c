"""Batches of similar length, padded only as far as their longest window.

SQuAD windows are mostly far shorter than `max_seq_length`; padding every window to it
(as `run_qa.py` does) spends a third or more of the compute on padding. Grouping by
length keeps batches random at the scale of the epoch while making the padding inside
each batch small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .features import Features


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_factor: int = 50
) -> list[list[int]]:
    """Shuffled batches of indices whose lengths are close.

    The order is a pure function of (seed, epoch), so a resumed or multi-process run sees
    exactly the batches an uninterrupted single-process run would.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    group = batch_size * group_factor
    batches = []
    for lo in range(0, len(order), group):
        chunk = sorted(order[lo : lo + group], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def random_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Plain shuffled batches (the reference recipes' sampler), for comparisons."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def sorted_batches(
    lengths: Sequence[int], batch_size: int, overhead: float | None = None
) -> list[list[int]]:
    """Batches for inference, longest first, each padded only to its own longest window.

    Without `overhead`: full batches of the sorted windows. With it (what one more forward
    pass costs, counted in windows of that pass's length), the cuts are chosen to minimise
    padded tokens plus passes. Why: a question's passages range from a sentence to a
    full window, and one batch of them spends a third of its compute on padding (measured
    over SQuAD questions at depths 5 to 20); on a CPU a small batch costs little more
    per window than a large one, so several batches of like lengths read sooner.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    if overhead is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    longest = np.array([lengths[i] for i in order], dtype=np.float64)
    # cost[j]: cheapest way to read the j longest windows; a batch [i, j) is padded to
    # longest[i]. Every batch holds at most batch_size windows.
    cost = np.zeros(len(order) + 1)
    cut = np.zeros(len(order) + 1, dtype=np.int64)
    for j in range(1, len(order) + 1):
        lo = max(0, j - batch_size)
        starts = np.arange(lo, j)
        options = cost[lo:j] + longest[lo:j] * (j - starts + overhead)
        best = int(np.argmin(options))
        cost[j], cut[j] = options[best], lo + best
    batches, j = [], len(order)
    while j > 0:
        batches.append(order[cut[j] : j])
        j = int(cut[j])
    return batches[::-1]


def collate(
    features: Features, indices: Sequence[int], pad_id: int, pad_to: int | None = None
) -> dict[str, torch.Tensor]:
    """Tensors for the windows `indices`, padded to the longest (or to `pad_to`)."""
    width = pad_to or max(len(features.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(indices), width), dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(features.input_ids[i])
        ids[row, :n] = torch.tensor(features.input_ids[i])
        types[row, :n] = torch.tensor(features.token_type_ids[i])
        mask[row, :n] = 1
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
    if features.has_labels:
        batch["start_positions"] = torch.tensor([features.start_positions[i] for i in indices])
        batch["end_positions"] = torch.tensor([features.end_positions[i] for i in indices])
    return batch
