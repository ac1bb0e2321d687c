"""Where and in what precision a model runs: the device, bf16 where it pays, OpenMP care.

The reader, the embedder and both training loops ask this one module, so that a CPU
without bf16 units (or `SPANQA_CPU_BF16=0`) changes every one of them the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

import torch


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)

