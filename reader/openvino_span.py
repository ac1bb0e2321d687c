"""A span model's start/end logits computed by OpenVINO on a CPU.

Why: reading is most of a question's latency on a CPU, and OpenVINO's CPU plugin runs the
same weights faster than PyTorch: in bf16 on 2 AMD EPYC cores with AVX512-BF16, a
MiniLM reader read one dev window in 10.0 ms against PyTorch's 14.0 (bf16 weights), and
batches of 8 in 9.0 against 13.9 ms a window, with the same distance from fp32 logits.

The model reaches OpenVINO as the plain ONNX export (cached and checked against PyTorch
like the ONNX Runtime backend's), checked again and compiled as reader/openvino_runtime.py
explains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..runtime.onnx import graph_feeds
from ..runtime.openvino import compile_model
from .onnx_span import OUTPUTS, export_samples


class OpenVinoSpanModel:
    """Start and end logits of a question-answering model, compiled by OpenVINO."""

    def __init__(self, model, tokenizer, *, bf16: bool, threads: int | None = None,
                 cache: Path | None = None):
        self.graph = compile_model(model, export_samples(model, tokenizer), OUTPUTS,
                                   lambda out: (out.start_logits, out.end_logits),
                                   bf16=bf16, threads=threads, cache=cache)
        self.path, self.inputs = self.graph.path, self.graph.input_names
        self.precision = self.graph.precision

    def logits(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.graph.infer(graph_feeds(batch, self.inputs))
        return start, end
