"""Running a span model over windows, batched and sorted by length."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..runtime.device import autocast
from .batching import collate, sorted_batches
from .features import Features
from .onnx_span import OnnxSpanModel
from .openvino_span import OpenVinoSpanModel


def default_batch_size(device: torch.device, dtype: torch.dtype | None = None) -> int:
    """Windows per forward pass for PyTorch: large on a GPU; small on a CPU, where a
    batch that stays in cache beats a big one (measured on 2 cores: 8 windows read dev
    1.2x faster than 64 in fp32, padded or not; in bf16, 32 windows were 6-9% faster than
    8, and 64 slower)."""
    if device.type == "cuda":
        return 64
    return 32 if dtype == torch.bfloat16 else 8


# What one more forward pass costs on a CPU, in windows of its length: 2 AMD EPYC cores
# read n windows of L tokens in about (n + 0.25) times one window's time, for L from 96
# to 256 and n up to 8, in bf16. It sets where a question's passages are cut into batches.
CPU_BATCH_OVERHEAD = 0.25


def batch_overhead(device: torch.device) -> float | None:
    """The cost of a forward pass that `sorted_batches` weighs against padding; None (full
    batches) on a GPU, where a pass's fixed cost is large against a window's (not
    measured there)."""
    return CPU_BATCH_OVERHEAD if device.type == "cpu" else None


def predict_logits(
    model: PreTrainedModel | OnnxSpanModel | OpenVinoSpanModel,
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

    `model` is a PyTorch span model or its ONNX Runtime or OpenVINO compilation.
    `batch_size` (windows per forward pass) defaults to what is fastest on the device.
    `pad_to` and `sort_by_length=False` reproduce the reference recipes' padded, unsorted
    batches for benchmarks.
    """
    starts: list[np.ndarray] = [np.empty(0)] * len(features)
    ends: list[np.ndarray] = [np.empty(0)] * len(features)
    if isinstance(model, OnnxSpanModel):
        # Its runs are spread over the cores, a few windows each: full batches balance them.
        size, mapper = model.batch_size(len(features), batch_size), model.map
        overhead = None
    elif isinstance(model, OpenVinoSpanModel):
        size, mapper = batch_size or default_batch_size(torch.device("cpu")), map
        overhead = CPU_BATCH_OVERHEAD
    else:
        device = device or next(model.parameters()).device
        size, mapper = batch_size or default_batch_size(device, dtype), map
        overhead = batch_overhead(device)
    if sort_by_length:
        batches = sorted_batches(features.lengths, size, None if pad_to else overhead)
    else:
        batches = [list(range(i, min(i + size, len(features))))
                   for i in range(0, len(features), size)]
    with _inference(model, device, dtype) as forward:

        def read(indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
            batch = collate(features, indices, pad_id, pad_to)
            batch.pop("start_positions", None)
            batch.pop("end_positions", None)
            return forward(batch)

        done = tqdm(mapper(read, batches), total=len(batches), desc="predict", unit="batch",
                    disable=not progress)
        for indices, (s, e) in zip(batches, done, strict=True):
            for row, i in enumerate(indices):
                n = len(features.input_ids[i])
                starts[i], ends[i] = s[row, :n], e[row, :n]
    return starts, ends


@contextlib.contextmanager
def _inference(model: PreTrainedModel | OnnxSpanModel | OpenVinoSpanModel,
               device: torch.device | None, dtype: torch.dtype | None):
    """A batch -> (start, end) logits function, with the model in eval mode meanwhile."""
    if isinstance(model, OnnxSpanModel | OpenVinoSpanModel):
        yield model.logits
        return
    device = device or next(model.parameters()).device
    was_training = model.training
    if was_training:  # eval() walks every module: 2 ms of a 25 ms question, so only if needed
        model.eval()

    def forward(batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        if bool(batch["attention_mask"].all()):
            # Nothing to mask (one window, or windows of one length): without the mask,
            # attention takes its unmasked kernel, the same logits 1 ms sooner per window.
            batch = {k: v for k, v in batch.items() if k != "attention_mask"}
        out = model(**{k: v.to(device) for k, v in batch.items()})
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()

    try:
        with torch.inference_mode(), autocast(device, dtype):
            yield forward
    finally:
        if was_training:
            model.train()
