"""A sentence-transformers model run from its ONNX export, by ONNX Runtime or OpenVINO.

Why: on a CPU, embedding is most of an index build. ONNX Runtime's fused (and int8) graph
embeds passages about 1.5x faster than PyTorch on 2 cores; OpenVINO in bf16, on CPUs with
bf16 units, faster still and closer to fp32 than int8 (bench/retrieval.py measures them
against `SentenceTransformer.encode`, with the recall kept). The export itself, its checks
and its cache live in runtime/onnx.py and runtime/openvino.py, shared with the reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .onnx import cache_root, export_cached, graph_feeds, onnx_available, session

__all__ = ["OnnxSentenceEncoder", "cache_root", "onnx_available"]

POOLING = ("mean", "cls")


class OnnxSentenceEncoder:
    """The transformer of a loaded SentenceTransformer, exported to ONNX, plus its pooling.

    Supports the common shape of embedding models, a transformer followed by mean or CLS
    pooling; anything else is refused with a clear message (use the torch backend).
    """

    def __init__(self, st_model, *, quantize: bool = False, openvino: bool = False,
                 bf16: bool = False, cache: Path | None = None, batch_size: int = 32,
                 threads: int | None = None):
        """ONNX Runtime (fp32, or int8 weights with `quantize`), or with `openvino` OpenVINO
        (fp32, or bf16 with `bf16`)."""
        if quantize and openvino:
            raise ValueError("OpenVINO runs the fp32 export (in bf16 with bf16=True), not int8")
        self.pooling = _pooling_mode(st_model)
        self.tokenizer = st_model.tokenizer
        self.max_length = int(st_model.max_seq_length)
        self.batch_size = batch_size
        samples = [dict(self.tokenizer(texts, padding=True, return_tensors="pt")) for texts in (
            ["a short text", "a somewhat longer text, with padding"],
            ["three texts", "of other lengths than the first batch", "x"])]
        transformer = _transformer(st_model)
        export = (transformer, samples, ["last_hidden_state"], lambda out: out.last_hidden_state)
        if openvino:
            from .openvino import compile_model

            self.graph = compile_model(*export, bf16=bf16, threads=threads,
                                       cache=cache or cache_root())
            self.inputs = self.graph.input_names
        else:
            path = export_cached(*export, quantize=quantize, cache=cache or cache_root())
            self.session = session(path, threads)
            self.inputs = [i.name for i in self.session.get_inputs()]

    graph = session = None  # the engine that runs the export: one of the two

    def hidden(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The transformer's last hidden states for a batch of graph inputs."""
        if self.graph is not None:
            return self.graph.infer(feeds)[0]
        return self.session.run(None, feeds)[0]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 rows; batches of similar length so padding costs little."""
        lengths = [len(ids) for ids in self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length)["input_ids"]]
        order = np.argsort(lengths, kind="stable")[::-1]
        out: np.ndarray | None = None
        for i in range(0, len(texts), self.batch_size):
            rows = order[i:i + self.batch_size]
            batch = self.tokenizer([texts[j] for j in rows], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="np")
            hidden = self.hidden(graph_feeds(batch, self.inputs))
            vectors = _pool(hidden, batch["attention_mask"], self.pooling)
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), np.float32)
            out[rows] = vectors
        return out if out is not None else np.zeros((0, 0), np.float32)


def _pooling_mode(st_model) -> str:
    modules = list(st_model)
    names = [type(m).__name__ for m in modules]
    if len(modules) < 2 or names[0] != "Transformer" or names[1] != "Pooling" or \
            any(n not in ("Normalize",) for n in names[2:]):
        raise ValueError(f"the ONNX backend runs a transformer with pooling; this model is "
                         f"{' -> '.join(names)}: use the torch backend")
    config = modules[1].get_config_dict()
    legacy = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens",
                          "weightedmean_tokens", "lasttoken") if config.get(f"pooling_mode_{m}")]
    if len(legacy) > 1:
        raise ValueError(f"the ONNX backend runs one pooling, not {legacy}: use the torch "
                         "backend")
    mode = config.get("pooling_mode") or next(
        (m for m in POOLING if config.get(f"pooling_mode_{m}_token" if m == "cls" else
                                          f"pooling_mode_{m}_tokens")), None)
    if mode not in POOLING:
        raise ValueError(f"the ONNX backend supports {' or '.join(POOLING)} pooling, not "
                         f"{mode!r}: use the torch backend")
    return mode


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls":
        vectors = hidden[:, 0]
    else:
        weights = mask[..., None].astype(np.float32)
        vectors = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _transformer(st_model):
    module = st_model[0]
    return getattr(module, "auto_model", None) or module.model
