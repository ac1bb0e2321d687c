"""Running a cached ONNX export with OpenVINO on a CPU: checked first, then compiled.

Why a module of its own: the reader's span model and the indexer's sentence encoder both
run this way. The runtime reads the plain ONNX export itself (`Core.read_model`);
OpenVINO's model converter is never used, because it reports usage to Intel from the
user's machine unless they have opted out. Before anything is computed with a graph, it
must reproduce PyTorch's outputs as OpenVINO computes them in fp32; then it is compiled in
the precision asked for (bf16 on CPUs with bf16 units is where OpenVINO is fastest).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .onnx import (
    MAX_ERROR,
    as_tuple,
    evaluated_on_cpu,
    export_cached,
    graph_feeds,
    largest_difference,
)


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def openvino_offers_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes in bf16 on this machine when asked to
    (elsewhere it takes the request and computes in fp32)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


SHAPE_STEP = 16  # tokens: inputs are padded to a multiple of it (see `OpenVinoGraph.infer`)


class OpenVinoGraph:
    """A checked, compiled graph; `infer` may be called from several threads at once."""

    def __init__(self, path: Path, samples: list[dict], expected: list[list[np.ndarray]], *,
                 bf16: bool, threads: int, max_length: int | None = None):
        """`samples` are input batches (tensors or arrays by name), `expected` PyTorch's
        outputs for them; `max_length` the longest sequence the model takes (the model's
        positions), which padding never passes."""
        import openvino as ov

        self.path, self.max_length, self.shape_step = path, max_length, SHAPE_STEP
        core = ov.Core()
        graph = core.read_model(str(path))
        self.input_names = [port.get_any_name() for port in graph.inputs]
        feeds = [graph_feeds(s, self.input_names) for s in samples]
        checker = core.compile_model(graph, "CPU", _settings("f32", threads)).create_infer_request()
        error = largest_difference(lambda feed: list(checker.infer(feed).values()), feeds,
                                   expected)
        if error > MAX_ERROR:
            raise RuntimeError(f"OpenVINO's result differs from PyTorch by {error:.2g}; "
                               "use the torch backend for this model")
        self.compiled = core.compile_model(graph, "CPU",
                                           _settings("bf16" if bf16 else "f32", threads))
        # What the runtime computes in, not what was asked: on a CPU without bf16 units
        # OpenVINO takes a bf16 request and runs it in fp32.
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self._local = threading.local()

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs, in order (copies: they outlive the next call).

        Every input is [batch, tokens], every output [batch, tokens, ...]. The tokens are
        padded (masked) to a multiple of SHAPE_STEP and the outputs cut back: OpenVINO
        prepares its kernels for each input shape it meets and caches them by shape, and a
        new question almost always brings a new length. Measured on 2 cores, 195 new dev
        questions read by two readers in turn: over their top passage 12.6 ms padded
        against 14.9 unpadded (1.19x), over their top 5 56.9 against 64.6 ms (1.14x).
        """
        request = getattr(self._local, "request", None)
        if request is None:  # infer requests are not to be shared between threads
            request = self._local.request = self.compiled.create_infer_request()
        length = next(iter(feeds.values())).shape[1]
        padded = -(-length // self.shape_step) * self.shape_step
        if self.max_length is not None:
            padded = max(length, min(padded, self.max_length))
        if padded != length:  # zeros: padding tokens, masked out, segment 0
            feeds = {name: np.pad(v, ((0, 0), (0, padded - length))) for name, v in feeds.items()}
        result = request.infer(feeds)
        return [result[i][:, :length] for i in range(len(result))]


def compile_model(model, samples: list[dict], outputs: list[str], pick, *, bf16: bool,
                  threads: int | None = None, cache: Path | None = None) -> OpenVinoGraph:
    """`model` (a PyTorch module) exported plainly to ONNX (cached), checked against
    its own outputs on `samples` and compiled; `pick` maps its output to the tensors
    named by `outputs`, as for `export_cached`."""
    import torch

    path = export_cached(model, samples, outputs, pick, quantize=False, fuse=False, cache=cache)
    with evaluated_on_cpu(model):
        expected = [[t.numpy() for t in as_tuple(pick(model(**s)))] for s in samples]
    return OpenVinoGraph(path, samples, expected, bf16=bf16,
                         threads=threads or torch.get_num_threads(),
                         max_length=getattr(model.config, "max_position_embeddings", None))


def _settings(precision: str, threads: int) -> dict[str, str]:
    # LATENCY: one stream over every core. Two single-core streams read 16 windows no
    # sooner (measured: 108-112 ms either way), and a lone question would wait on one core.
    return {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": str(threads)}
