"""Hugging Face BERT-family encoders exported to ONNX Runtime, fused and optionally int8.

Why: on a CPU, ONNX Runtime fuses attention, GeLU and LayerNorm into single kernels, and
int8 dynamic quantisation halves the bytes each matrix product reads. The reader's span
model and the indexer's sentence encoder run this way on CPUs without OpenVINO, or when
named (bench/reader.py and bench/retrieval.py measure the speed and what the scores lose).
OpenVINO reads the plain, unfused export made here (runtime/openvino.py).

An export is cached under the data directory, keyed by the weights, the outputs and the
library versions, so it is made once per model (seconds) and reused by every process.
Writes are atomic: a killed or concurrent export never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..core.paths import data_home

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKENDS = ("torch", "onnx", "onnx-int8")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MAX_ERROR = 1e-3  # fp32 export against PyTorch, before anything is computed with it


def cache_root() -> Path:
    """$SPANQA_ONNX_CACHE, else cache/onnx in SpanQA's data directory."""
    if os.environ.get("SPANQA_ONNX_CACHE"):
        return Path(os.environ["SPANQA_ONNX_CACHE"])
    return data_home() / "cache" / "onnx"


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def built_or_none(build: Callable[[], T], requested: str, activity: str,
                  engine: str = "ONNX Runtime") -> T | None:
    """`build()`; under `auto`, None when it fails (PyTorch then does the work), with a
    warning. Any failure counts: the engine's own errors, an unwritable cache, an odd
    model."""
    try:
        return build()
    except Exception as error:
        if requested != "auto":
            raise
        log.warning("%s cannot run this model (%s: %s); %s with PyTorch instead",
                    engine, type(error).__name__, error, activity)
        return None


def session(path: Path, threads: int | None = None):
    """A CPU session that does not spin idle threads.

    ORT's idle threads spin by default, stealing the cores from whatever runs next in the
    process (measured: +20-40 ms per question when the embedder spun before the reader).
    """
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_cached(
    model,
    samples: Sequence[dict],
    outputs: Sequence[str],
    pick: Callable,
    *,
    quantize: bool,
    per_channel: bool = False,
    cache: Path | None = None,
    fuse: bool = True,
) -> Path:
    """The cached ONNX graph of `model` (made first if missing).

    `pick` maps the model's output to the tensors named by `outputs`. `samples` are input
    batches (of at least two texts of different lengths): the first is traced, and the
    export must reproduce PyTorch on every one of them. `fuse=False` keeps the standard
    ONNX operators (no ONNX Runtime contrib kernels), for other runtimes to read.
    """
    cache = cache or cache_root()
    if quantize and not fuse:
        raise ValueError("int8 weights are quantised on the fused graph")
    key = _cache_key(model, outputs, quantize, per_channel, fuse)
    target, failed = cache / key, cache / f"{key}.failed"
    model_file = target / "model.onnx"
    with contextlib.suppress(OSError):
        os.utime(target)  # last use, so pruning spares it; then check it is (still) there
    if model_file.exists():
        return model_file
    if failed.exists():  # don't spend an export on every start to fail the same way again
        raise RuntimeError(f"{failed.read_text(encoding='utf-8', errors='replace')} (an "
                           f"earlier export of this model failed; delete {failed} to retry)")
    cache.mkdir(parents=True, exist_ok=True)
    _prune(cache)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=cache))
    try:
        log.info("exporting %s to ONNX (once per model) in %s", type(model).__name__, target)
        try:
            _export(model, list(samples), list(outputs), pick, work, quantize, per_channel,
                    fuse)
        except (OSError, MemoryError, ImportError):  # the machine's trouble: retry next time
            raise
        except Exception as error:
            with contextlib.suppress(OSError):
                failed.write_text(f"{type(error).__name__}: {error}", encoding="utf-8")
            raise
        try:
            os.replace(work, target)
        except OSError:  # another process published the same export first
            if not model_file.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return model_file


UNUSED_DAYS = 30
_CACHE_ENTRY = re.compile(r"[0-9a-f]{24}(\.failed)?|\.export-.+")


def _prune(cache: Path) -> None:
    """Drop exports unused for UNUSED_DAYS and failure notes as old (every retrained model
    leaves an export behind), and work folders a killed export left an hour ago or more."""
    now = time.time()
    for entry in cache.iterdir():
        if not _CACHE_ENTRY.fullmatch(entry.name):
            continue  # not ours: the folder may be shared ($SPANQA_ONNX_CACHE)
        with contextlib.suppress(OSError):  # another process may be removing it too
            age = now - entry.stat().st_mtime
            if entry.name.startswith(".export-"):
                if age > 3600:
                    shutil.rmtree(entry, ignore_errors=True)
            elif age > UNUSED_DAYS * 86400:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()


def _cache_key(model, outputs: Sequence[str], quantize: bool, per_channel: bool,
               fuse: bool) -> str:
    import onnx
    import onnxruntime
    import torch

    digest = hashlib.sha256()
    config = model.config.to_dict()
    config.pop("_name_or_path", None)  # where the weights were read from is not what they are
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    unfused = "" if fuse else " unfused"  # the fused graphs keep their earlier keys
    digest.update(f"{torch.__version__} {onnxruntime.__version__} {onnx.__version__} "
                  f"{list(outputs)} "
                  f"q={quantize} pc={per_channel} v3{unfused}".encode())
    return digest.hexdigest()[:24]


def _export(model, samples: list[dict], outputs: list[str], pick: Callable, work: Path,
            quantize: bool, per_channel: bool, fuse: bool) -> None:
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    sample = samples[0]
    names = [n for n in INPUTS if n in sample]
    implementation = model.config._attn_implementation
    # The eager attention graph is the pattern ONNX Runtime's optimizer fuses into one kernel.
    model.set_attn_implementation("eager")
    try:
        raw = work / "raw.onnx"
        with evaluated_on_cpu(model), warnings.catch_warnings():
            # The tracer's notes on shape-dependent branches: the check below is the proof.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _positional(model, names, pick), tuple(sample[n] for n in names), str(raw),
                input_names=names, output_names=outputs,
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, *outputs]},
                opset_version=17, dynamo=False)
            expected = [[t.numpy() for t in as_tuple(pick(model(**{n: s[n] for n in names})))]
                        for s in samples]
    finally:
        model.set_attn_implementation(implementation)
    feeds = [{n: s[n].numpy() for n in names} for s in samples]
    if not fuse:
        _check(raw, feeds, expected)
        raw.rename(work / "model.onnx")
        return
    config = model.config
    with _quiet_onnxruntime():
        fused = optimizer.optimize_model(str(raw), model_type="bert",
                                         num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size)
        fused_file = work / "fused.onnx"
        fused.save_model_to_file(str(fused_file))
    _check(fused_file, feeds, expected)
    if quantize:
        with _quiet_onnxruntime():
            # Unsigned 8-bit weights: the signed kind saturates on AVX2's u8*s8 instruction.
            # The matrix products only: int8 embeddings save memory, not time, and cost
            # the reader 0.8 dev F1 (66.28 against 67.08 with them kept in fp32).
            quantize_dynamic(str(fused_file), str(work / "model.onnx"),
                             weight_type=QuantType.QUInt8, per_channel=per_channel,
                             op_types_to_quantize=["MatMul", "Attention"],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    else:
        fused_file.rename(work / "model.onnx")
    for name in ("raw.onnx", "fused.onnx"):
        (work / name).unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_onnxruntime():
    """ORT's optimizer and quantiser log every node they touch at INFO, through the root
    logger, and advise pre-processing for static quantisation at WARNING; none of it is
    news to a user. Its module-level logging calls would also install a stderr handler on
    an unconfigured root logger for good: a handler held for the duration prevents that."""
    root = logging.getLogger()
    previous = logging.root.manager.disable
    quiet = logging.NullHandler() if not root.handlers else None
    logging.disable(logging.INFO)
    root.addFilter(_no_preprocessing_advice)
    if quiet:
        root.addHandler(quiet)
    try:
        yield
    finally:
        logging.disable(previous)
        root.removeFilter(_no_preprocessing_advice)
        if quiet:
            root.removeHandler(quiet)


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    return "pre-processing before quantization" not in record.getMessage()


def _check(path: Path, feeds: list[dict[str, np.ndarray]],
           expected: list[list[np.ndarray]]) -> None:
    """The exported graph must reproduce PyTorch, on batches other than the traced one too,
    before anything is computed with it."""
    import onnxruntime as ort

    checker = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    error = largest_difference(
        lambda batch: checker.run(None, {k: v.astype(np.int64) for k, v in batch.items()}),
        feeds, expected)
    if error > MAX_ERROR:
        raise RuntimeError(f"the ONNX export differs from PyTorch by {error:.2g}; "
                           "use the torch backend for this model")


def largest_difference(run: Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]],
                       feeds: list[dict[str, np.ndarray]],
                       expected: list[list[np.ndarray]]) -> float:
    """The largest absolute difference between `run`'s outputs and PyTorch's, over every
    batch and output."""
    return max(float(np.abs(got - want).max())
               for feed, outputs in zip(feeds, expected, strict=True)
               for got, want in zip(run(feed), outputs, strict=True))


def graph_feeds(batch: dict, inputs: list[str]) -> dict[str, np.ndarray]:
    """A batch (tensors or arrays, by name) as an exported graph's int64 inputs."""
    feeds = {name: np.asarray(batch[name]).astype(np.int64) for name in inputs if name in batch}
    for name in set(batch) - set(inputs):
        if batch[name].any():  # an input the graph would silently ignore
            raise ValueError(f"the exported graph takes no {name}, but this batch has them")
    if "token_type_ids" in inputs and "token_type_ids" not in feeds:
        feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    return feeds


@contextlib.contextmanager
def evaluated_on_cpu(model):
    """The model in eval mode on the CPU without gradients, put back as it was after."""
    import torch

    was_training = model.training
    device = next(model.parameters()).device
    model.eval().to("cpu")
    try:
        with torch.no_grad():
            yield model
    finally:
        model.to(device).train(was_training)


def as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _positional(model, names: list[str], pick: Callable):
    """Positional inputs in, the picked outputs out: what the ONNX exporter traces."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return pick(self.model(**dict(zip(names, inputs, strict=True))))

    return Positional().eval()
