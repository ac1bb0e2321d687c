"""Which engine computes a reader's logits, and building it.

Why a choice at all: on a GPU PyTorch is the engine. On a CPU the same weights read
faster through a compiled graph: OpenVINO (in bf16 on CPUs with bf16 units, else fp32)
or ONNX Runtime's fused fp32 graph; bench/reader.py measures each side by side.
"""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from ..runtime.onnx import built_or_none, onnx_available
from ..runtime.openvino import openvino_available
from .config import READER_BACKENDS
from .onnx_span import OnnxSpanModel
from .openvino_span import OpenVinoSpanModel
from .runner import SpanRunner, TorchSpanModel


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype | None = None) -> str:
    """`auto`: PyTorch on a GPU; OpenVINO on a CPU where it is installed; else the fused
    fp32 ONNX graph on a CPU reading in fp32, and PyTorch in bf16 (where native bf16
    units beat any fp32 kernel). `dtype` is what the reader reads in (None: fp32)."""
    if backend != "auto" and backend not in READER_BACKENDS:
        raise ValueError(f"reader backend must be auto or one of {', '.join(READER_BACKENDS)}, "
                         f"got {backend!r}")
    if backend == "auto":
        if device.type != "cpu":
            return "torch"
        if openvino_available() and dtype in (None, torch.bfloat16):
            return "openvino"
        return "onnx" if dtype is None and onnx_available() else "torch"
    if backend != "torch" and device.type != "cpu":
        raise ValueError(f"the {backend} backend runs on the CPU; use torch on {device}")
    return backend


def build_runner(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, backend: str,
                 device: torch.device, dtype: torch.dtype | None) -> tuple[str, SpanRunner]:
    """(backend name, what computes the logits); `auto` falls back to PyTorch for a model
    the chosen engine cannot convert faithfully."""
    name = resolve_backend(backend, device, dtype)
    runner = None
    if name == "openvino":
        runner = built_or_none(
            lambda: OpenVinoSpanModel(model, tokenizer, bf16=dtype == torch.bfloat16),
            backend, "reading", engine="OpenVINO")
    elif name in ("onnx", "onnx-int8"):
        runner = built_or_none(
            lambda: OnnxSpanModel(model, tokenizer, quantize=name == "onnx-int8"),
            backend, "reading")
    if runner is not None:
        return name, runner
    if device.type == "cpu" and dtype == torch.bfloat16:
        # Weights stored in bf16: autocast would convert every matrix at every forward
        # pass (a single question read 1.2x faster, dev F1 the same to 0.1).
        return "torch", TorchSpanModel(copy.deepcopy(model).to(torch.bfloat16), device, dtype)
    return "torch", TorchSpanModel(model, device, dtype)
