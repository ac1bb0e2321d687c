"""A span model's start/end logits computed by OpenVINO on a CPU.

Why: reading is most of a question's latency on a CPU, and OpenVINO's CPU plugin runs the
same weights faster than PyTorch: in bf16 on 2 AMD EPYC cores with AVX512-BF16, a
MiniLM reader read one dev window in 10.0 ms against PyTorch's 14.0 (bf16 weights), and
batches of 8 in 9.0 against 13.9 ms a window, with the same distance from fp32 logits.

The model reaches OpenVINO as a plain ONNX export (standard operators, cached and checked
against PyTorch like the ONNX Runtime backend's, reader/onnx_export.py), read by the
runtime itself: OpenVINO's model converter would report usage to Intel from the user's
machine unless they had opted out. The graph is checked again as OpenVINO computes it in
fp32, then compiled in the precision asked for. Each thread that reads gets its own infer
request.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from reader.onnx_export import MAX_ERROR, evaluated_on_cpu, export_cached, largest_difference
from reader.onnx_span import OUTPUTS, export_samples, graph_feeds


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoSpanModel:
    """Start and end logits of a question-answering model, compiled by OpenVINO."""

    def __init__(self, model, tokenizer, *, bf16: bool, threads: int | None = None,
                 cache: Path | None = None):
        import openvino as ov

        samples = export_samples(model, tokenizer)
        self.path = export_cached(model, samples, OUTPUTS,
                                  lambda out: (out.start_logits, out.end_logits),
                                  quantize=False, fuse=False, cache=cache)
        core = ov.Core()
        graph = core.read_model(str(self.path))
        self.inputs = [port.get_any_name() for port in graph.inputs]
        with evaluated_on_cpu(model):
            expected = [[t.numpy() for t in (out.start_logits, out.end_logits)]
                        for out in (model(**s) for s in samples)]
        threads = threads or torch.get_num_threads()
        _check(core.compile_model(graph, "CPU", _settings("f32", threads)),
               [graph_feeds(s, self.inputs) for s in samples], expected)
        self.precision = "bf16" if bf16 else "f32"
        self.compiled = core.compile_model(graph, "CPU", _settings(self.precision, threads))
        self._local = threading.local()

    def logits(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:  # infer requests are not to be shared between threads
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(graph_feeds(batch, self.inputs))  # copies its outputs
        return result[0], result[1]


def _settings(precision: str, threads: int) -> dict[str, str]:
    # LATENCY: one stream over every core. Two single-core streams read 16 windows no
    # sooner (measured: 108-112 ms either way), and a lone question would wait on one core.
    return {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": str(threads)}


def _check(compiled, feeds: list[dict[str, np.ndarray]],
           expected: list[list[np.ndarray]]) -> None:
    """The graph must reproduce PyTorch in fp32 as OpenVINO computes it, before anything
    is read with it."""
    request = compiled.create_infer_request()
    error = largest_difference(lambda feed: list(request.infer(feed).values()), feeds, expected)
    if error > MAX_ERROR:
        raise RuntimeError(f"OpenVINO's reading differs from PyTorch by {error:.2g}; "
                           "use the torch backend for this model")


__all__ = ["OUTPUTS", "OpenVinoSpanModel", "openvino_available"]
