"""Running a span model over windows, batched and sorted by length."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from .batching import collate, sorted_batches
from .features import Features
from .runner import SpanRunner, TorchSpanModel


def predict_logits(
    model: SpanRunner | PreTrainedModel,
    features: Features,
    *,
    pad_id: int,
    batch_size: int | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    pad_to: int | None = None,
    sort_by_length: bool = True,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits per window (unpadded, in the order of `features`).

    `model` is a `SpanRunner` (`Reader.runner`), or a PyTorch span model read on `device`
    (default: where its weights are) in `dtype`. `batch_size` (windows per forward pass)
    defaults to what is fastest for the engine. `pad_to` and `sort_by_length=False`
    reproduce the reference recipes' padded, unsorted batches for benchmarks.
    """
    runner = TorchSpanModel(model, device, dtype) if isinstance(model, torch.nn.Module) else model
    starts: list[np.ndarray] = [np.empty(0)] * len(features)
    ends: list[np.ndarray] = [np.empty(0)] * len(features)
    size, overhead = runner.batching(len(features), batch_size)
    if sort_by_length:
        batches = sorted_batches(features.lengths, size, None if pad_to else overhead)
    else:
        batches = [list(range(i, min(i + size, len(features))))
                   for i in range(0, len(features), size)]
    with runner.reading() as forward:

        def read(indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
            batch = collate(features, indices, pad_id, pad_to)
            batch.pop("start_positions", None)
            batch.pop("end_positions", None)
            return forward(batch)

        done = tqdm(runner.map(read, batches), total=len(batches), desc="predict", unit="batch",
                    disable=not progress)
        for indices, (s, e) in zip(batches, done, strict=True):
            for row, i in enumerate(indices):
                n = len(features.input_ids[i])
                starts[i], ends[i] = s[row, :n], e[row, :n]
    return starts, ends
