"""Running a span model over windows, batched and sorted by length."""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from reader.batching import collate, sorted_batches
from reader.features import Features
from reader.onnx_span import OnnxSpanModel
from reader.openvino_span import OpenVinoSpanModel


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The GPU when there is one, else the CPU; an explicit choice wins."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The mixed-precision dtype to use, or None for full fp32.

    "auto" takes bf16 on GPUs that support it and fp32 elsewhere: on CPUs without bf16
    units, autocast is slower than fp32.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def release_openmp_workers() -> bool:
    """Let the calling thread's idle OpenMP workers exit; True when a pool was released.

    Why: PyTorch's bundled libgomp counts every worker pool any thread ever started, and
    once they outnumber the cores it parks its workers between operations instead of
    spinning. A server that loads the model on one thread and reads on another then reads
    20-40% slower (measured on 2 cores: 19.6 against 14.7 ms a window in batches of 3).
    Freeing the loading thread's pool keeps the reading thread's workers spinning. Only
    where PyTorch runs on its own libgomp (Linux pip wheels); elsewhere it does nothing.
    """
    library = Path(torch.__file__).parent / "lib" / "libgomp.so.1"
    try:
        with open("/proc/self/maps") as maps:
            if not any(str(library) in line for line in maps):
                return False
        return ctypes.CDLL(str(library)).omp_pause_resource_all(1) == 0  # 1: omp_pause_soft
    except (OSError, AttributeError):
        return False


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX).

    Why: there a bf16 matrix product runs about 3x faster than fp32 (measured on 2 AMD
    EPYC cores: 330 against 96 GFLOPS), which reads windows twice as fast; without those
    units PyTorch converts bf16 in software and is slower than fp32.

    `SPANQA_CPU_BF16=0` answers False on any CPU: the test suite runs that way to walk the
    paths a CPU without bf16 units takes (and a user can pin fp32 reading with it).
    """
    if os.environ.get("SPANQA_CPU_BF16", "").strip() == "0":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def inference_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The dtype to read (not train) in: as `autocast_dtype`, but "auto" also takes bf16
    on CPUs with native bf16 units (bench/reader.py's inference phase measures what the
    scores lose). Training on a CPU stays fp32: its quality in bf16 is not measured."""
    if precision == "auto" and device.type == "cpu":
        return torch.bfloat16 if cpu_has_bf16() else None
    return autocast_dtype(device, precision)


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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
