"""The one protocol every engine that reads windows into span logits follows.

The reader, its evaluation and the benchmarks hand windows to a `SpanRunner` and never ask
which engine it is: PyTorch (`TorchSpanModel`, here), ONNX Runtime
(reader/onnx_span.py) or OpenVINO (reader/openvino_span.py). Each says how it wants its
windows batched, how it spreads batches over the cores, and reads one batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

import numpy as np
import torch
from transformers import PreTrainedModel

from ..runtime.device import autocast

T = TypeVar("T")
R = TypeVar("R")
Batch = dict[str, torch.Tensor]
Logits = tuple[np.ndarray, np.ndarray]

# What one more forward pass costs on a CPU, in windows of its length: 2 AMD EPYC cores
# read n windows of L tokens in about (n + 0.25) times one window's time, for L from 96
# to 256 and n up to 8, in bf16. It sets where a question's passages are cut into batches.
CPU_BATCH_OVERHEAD = 0.25


class SpanRunner(Protocol):
    """Computes a span model's start and end logits for batches of windows."""

    # What the engine says it computes in ("bf16", "f32"), where it may differ from what
    # was asked for (OpenVINO on a CPU without bf16 units); None: as asked.
    precision: str | None

    def batching(self, windows: int, requested: int | None) -> tuple[int, float | None]:
        """Windows per forward pass for `windows` in all (`requested`: the caller's size,
        None for the engine's best), and the cost of one more pass in windows that
        reader/batching.py weighs against padding (None: cut full batches)."""
        ...

    def map(self, read: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """`read` over `items`, results in order: in turn, or spread over the cores."""
        ...

    def reading(self) -> contextlib.AbstractContextManager[Callable[[Batch], Logits]]:
        """A batch -> (start, end) logits function, valid inside the block."""
        ...


def default_batch_size(device: torch.device, dtype: torch.dtype | None = None) -> int:
    """Windows per forward pass for PyTorch: large on a GPU; small on a CPU, where a
    batch that stays in cache beats a big one (measured on 2 cores: 8 windows read dev
    1.2x faster than 64 in fp32, padded or not; in bf16, 32 windows were 6-9% faster than
    8, and 64 slower)."""
    if device.type == "cuda":
        return 64
    return 32 if dtype == torch.bfloat16 else 8


def batch_overhead(device: torch.device) -> float | None:
    """The cost of a forward pass that `sorted_batches` weighs against padding; None (full
    batches) on a GPU, where a pass's fixed cost is large against a window's (not
    measured there)."""
    return CPU_BATCH_OVERHEAD if device.type == "cpu" else None


class TorchSpanModel:
    """A PyTorch span model read in eval mode, under inference mode and autocast to
    `dtype` (None: as its weights are)."""

    precision = None

    def __init__(self, model: PreTrainedModel, device: torch.device | None = None,
                 dtype: torch.dtype | None = None):
        self.model, self.dtype = model, dtype
        self.device = device or next(model.parameters()).device

    def batching(self, windows: int, requested: int | None) -> tuple[int, float | None]:
        return requested or default_batch_size(self.device, self.dtype), batch_overhead(self.device)

    def map(self, read: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        return map(read, items)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Callable[[Batch], Logits]]:
        model, device = self.model, self.device
        was_training = model.training
        if was_training:  # eval() walks every module: 2 ms of a 25 ms question, so only if needed
            model.eval()

        def forward(batch: Batch) -> Logits:
            if bool(batch["attention_mask"].all()):
                # Nothing to mask (one window, or windows of one length): without the mask,
                # attention takes its unmasked kernel, the same logits 1 ms sooner per window.
                batch = {k: v for k, v in batch.items() if k != "attention_mask"}
            out = model(**{k: v.to(device) for k, v in batch.items()})
            return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()

        try:
            with torch.inference_mode(), autocast(device, self.dtype):
                yield forward
        finally:
            if was_training:
                model.train()
