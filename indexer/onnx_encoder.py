"""A sentence-transformers model run by ONNX Runtime, optionally with int8 weights.

Why: on a CPU, embedding is most of an index build. ONNX Runtime fuses attention, GeLU and
LayerNorm into single kernels, and int8 dynamic quantisation halves the bytes each matrix
product reads; together they embed passages about 1.5x faster than PyTorch on 2 cores
(bench/retrieval.py measures it against `SentenceTransformer.encode`, with the recall kept).

The exported graph is cached under the data directory, keyed by the weights and library
versions, so it is made once per model (seconds) and reused by every build and query.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")
POOLING = ("mean", "cls")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def cache_root() -> Path:
    data = os.environ.get("SPANQA_DATA") or Path(__file__).resolve().parents[1] / "data"
    return Path(data) / "cache" / "onnx"


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxSentenceEncoder:
    """The transformer of a loaded SentenceTransformer, exported to ONNX, plus its pooling.

    Supports the common shape of embedding models, a transformer followed by mean or CLS
    pooling; anything else is refused with a clear message (use the torch backend).
    """

    def __init__(self, st_model, *, quantize: bool, cache: Path | None = None,
                 batch_size: int = 32, threads: int | None = None):
        import onnxruntime as ort
        import torch

        self.pooling = _pooling_mode(st_model)
        self.tokenizer = st_model.tokenizer
        self.max_length = int(st_model.max_seq_length)
        self.batch_size = batch_size
        path = _export_cached(st_model, quantize, cache or cache_root())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads spin by default, stealing the cores from the reader's forward
        # pass that follows each question's embedding (measured: +20-40 ms per question).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

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
            feeds = {name: batch[name].astype(np.int64) for name in self.inputs
                     if name in batch}
            if "token_type_ids" in self.inputs and "token_type_ids" not in feeds:
                feeds["token_type_ids"] = np.zeros_like(batch["input_ids"], dtype=np.int64)
            hidden = self.session.run(None, feeds)[0]
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


def _cache_key(st_model, quantize: bool) -> str:
    import onnxruntime
    import torch

    digest = hashlib.sha256()
    model = _transformer(st_model)
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(f"{torch.__version__} {onnxruntime.__version__} q={quantize} v1".encode())
    return digest.hexdigest()[:24]


def _export_cached(st_model, quantize: bool, cache: Path) -> Path:
    """The cached graph for these weights, made first if missing (atomically: a killed or
    concurrent export never leaves a half-written model behind)."""
    target = cache / _cache_key(st_model, quantize)
    model_file = target / "model.onnx"
    if model_file.exists():
        return model_file
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob(".export-*"):  # left by a killed export an hour ago or more
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=cache))
    try:
        log.info("exporting the embedding model to ONNX (once per model) in %s", target)
        _export(st_model, work, quantize)
        try:
            os.replace(work, target)
        except OSError:  # another process published the same export first
            if not model_file.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return model_file


def _export(st_model, work: Path, quantize: bool) -> None:
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    model = _transformer(st_model)
    implementation = model.config._attn_implementation
    # The eager attention graph is the pattern ONNX Runtime's optimizer fuses into one kernel.
    model.set_attn_implementation("eager")
    try:
        sample = st_model.tokenizer(["a short text", "a somewhat longer text, with padding"],
                                    padding=True, return_tensors="pt")
        names = [n for n in INPUTS if n in sample]
        raw = work / "raw.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer's notes on shape-dependent branches: the check below is the proof.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _last_hidden(model, names).eval(), tuple(sample[n] for n in names), str(raw),
                input_names=names, output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "tokens"}
                              for n in [*names, "last_hidden_state"]},
                opset_version=17, dynamo=False)
            expected = model(**{n: sample[n] for n in names}).last_hidden_state.numpy()
    finally:
        model.set_attn_implementation(implementation)
    config = model.config
    fused = optimizer.optimize_model(str(raw), model_type="bert",
                                     num_heads=config.num_attention_heads,
                                     hidden_size=config.hidden_size)
    fused_file = work / "fused.onnx"
    fused.save_model_to_file(str(fused_file))
    _check(fused_file, {n: sample[n].numpy() for n in names}, expected)
    if quantize:
        # Unsigned 8-bit weights: the signed kind saturates on AVX2's u8*s8 instruction.
        quantize_dynamic(str(fused_file), str(work / "model.onnx"), weight_type=QuantType.QUInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    else:
        fused_file.rename(work / "model.onnx")
    for name in ("raw.onnx", "fused.onnx"):
        (work / name).unlink(missing_ok=True)


def _check(path: Path, feeds: dict[str, np.ndarray], expected: np.ndarray) -> None:
    """The exported graph must reproduce PyTorch before anything is embedded with it."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.astype(np.int64) for k, v in feeds.items()})[0]
    error = float(np.abs(got - expected).max())
    if error > 1e-3:
        raise RuntimeError(f"the ONNX export differs from PyTorch by {error:.2g}; "
                           "use the torch backend for this model")


def _last_hidden(model, names: list[str]):
    """Positional inputs in, the last hidden state out: what the ONNX exporter traces."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    return LastHidden()
