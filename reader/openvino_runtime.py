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

from reader.onnx_export import MAX_ERROR, graph_feeds, largest_difference


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoGraph:
    """A checked, compiled graph; `infer` may be called from several threads at once."""

    def __init__(self, path: Path, samples: list[dict], expected: list[list[np.ndarray]], *,
                 bf16: bool, threads: int):
        """`samples` are input batches (tensors or arrays by name), `expected` PyTorch's
        outputs for them."""
        import openvino as ov

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
        self.precision = "bf16" if bf16 else "f32"
        self.compiled = core.compile_model(graph, "CPU", _settings(self.precision, threads))
        self._local = threading.local()

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs, in order (copies: they outlive the next call)."""
        request = getattr(self._local, "request", None)
        if request is None:  # infer requests are not to be shared between threads
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(feeds)
        return [result[i] for i in range(len(result))]


def _settings(precision: str, threads: int) -> dict[str, str]:
    # LATENCY: one stream over every core. Two single-core streams read 16 windows no
    # sooner (measured: 108-112 ms either way), and a lone question would wait on one core.
    return {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": str(threads)}
