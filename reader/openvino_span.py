"""A span model's start/end logits computed by OpenVINO on a CPU.

Why: reading is most of a question's latency on a CPU, and OpenVINO's CPU plugin runs the
same weights faster than PyTorch: in bf16 on 2 AMD EPYC cores with AVX512-BF16, a
MiniLM reader read one dev window in 10.0 ms against PyTorch's 14.0 (bf16 weights), and
batches of 8 in 9.0 against 13.9 ms a window, with the same distance from fp32 logits.

The model reaches OpenVINO as the plain ONNX export (cached and checked against PyTorch
like the ONNX Runtime backend's), checked again and compiled as runtime/openvino.py
explains.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..runtime.onnx import graph_feeds
from ..runtime.openvino import compile_model
from .onnx_span import OUTPUTS, export_samples
from .runner import CPU_BATCH_OVERHEAD, Batch, Logits, R, T, default_batch_size


class OpenVinoSpanModel:
    """Start and end logits of a question-answering model, compiled by OpenVINO (a
    reader/runner.py `SpanRunner`)."""

    def __init__(self, model, tokenizer, *, bf16: bool, threads: int | None = None,
                 cache: Path | None = None):
        self.graph = compile_model(model, export_samples(model, tokenizer), OUTPUTS,
                                   lambda out: (out.start_logits, out.end_logits),
                                   bf16=bf16, threads=threads, cache=cache)
        self.path, self.inputs = self.graph.path, self.graph.input_names
        self.precision = self.graph.precision

    def batching(self, windows: int, requested: int | None) -> tuple[int, float]:
        return requested or default_batch_size(torch.device("cpu")), CPU_BATCH_OVERHEAD

    def map(self, read: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        return map(read, items)  # one compiled request uses every core already

    def reading(self) -> contextlib.AbstractContextManager[Callable[[Batch], Logits]]:
        return contextlib.nullcontext(self.logits)

    def logits(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.graph.infer(graph_feeds(batch, self.inputs))
        return start, end
