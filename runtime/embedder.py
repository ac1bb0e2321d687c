"""Sentence embeddings for dense retrieval: normalised, so inner product is cosine."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .onnx import BACKENDS

DEFAULT_EMBEDDER = "minilm"  # the pretrained all-MiniLM-L6-v2 shipped on PyPI: builds offline
EMBEDDER_BACKENDS = (*BACKENDS, "openvino")


def resolve_embedder(name: str) -> str:
    """The offline alias to its directory; sentence-transformers names and paths unchanged."""
    if name == DEFAULT_EMBEDDER:
        from .hub import offline_encoder_path

        return str(offline_encoder_path())
    return name


def resolve_backend(backend: str, device: str | None = None) -> str:
    """`auto`: PyTorch on a GPU; on a CPU OpenVINO where it is installed (in bf16 where the
    CPU has bf16 units), else ONNX Runtime with int8 weights."""
    from .onnx import onnx_available
    from .openvino import openvino_available

    if backend != "auto" and backend not in EMBEDDER_BACKENDS:
        raise ValueError(f"embedding backend must be auto or one of "
                         f"{', '.join(EMBEDDER_BACKENDS)}, got {backend!r}")
    if backend == "auto":
        import torch

        on_gpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")) != "cpu"
        if on_gpu or not onnx_available():
            return "torch"
        return "openvino" if openvino_available() else "onnx-int8"
    return backend


class Embedder:
    """A sentence-transformers model: PyTorch (on the GPU when there is one), ONNX Runtime or
    OpenVINO.

    The backend is part of an index's identity: passages and questions must be embedded by
    the same one, so the index records it and the retriever asks for it.
    """

    def __init__(self, name: str = DEFAULT_EMBEDDER, device: str | None = None,
                 batch_size: int = 64, backend: str = "auto"):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.batch_size = batch_size
        self.backend = resolve_backend(backend, device)
        self.model = SentenceTransformer(resolve_embedder(name),
                                         device="cpu" if self.backend != "torch" else device)
        dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = int(dim())
        self._onnx = None
        if self.backend != "torch":
            self._onnx = self._compiled(backend)
            if self._onnx is None and self.backend == "openvino":  # auto: the next fastest
                self.backend = "onnx-int8"
                self._onnx = self._compiled(backend)
            if self._onnx is None:
                self.backend = "torch"
                if device:
                    self.model.to(device)

    def _compiled(self, requested: str):
        """The exported encoder for `self.backend`; under `auto`, None if it cannot be
        trusted (built_or_none warns)."""
        from .device import cpu_has_bf16
        from .onnx import built_or_none
        from .onnx_encoder import OnnxSentenceEncoder

        openvino = self.backend == "openvino"
        return built_or_none(lambda: OnnxSentenceEncoder(
            self.model, quantize=self.backend == "onnx-int8", openvino=openvino,
            bf16=openvino and cpu_has_bf16()), requested, "embedding",
            engine="OpenVINO" if openvino else "ONNX Runtime")

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """float32 rows of unit length, one per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            return self._encode_onnx(list(texts), progress)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Like `encode`, but a question's vector never depends on the questions embedded
        with it: int8 ONNX quantises activations with one scale per batch, and OpenVINO's
        sums (in bf16 above all) move with the padding, so there each question is embedded
        alone (questions are short: this costs little)."""
        if self.backend not in ("onnx-int8", "openvino") or len(texts) < 2:
            return self.encode(texts)
        return np.concatenate([self.encode([text]) for text in texts])

    def _encode_onnx(self, texts: list[str], progress: bool) -> np.ndarray:
        from tqdm.auto import tqdm

        step = 1024  # chunks for the progress bar; the encoder batches within each
        out = np.zeros((len(texts), self.dim), np.float32)
        with tqdm(total=len(texts), desc="embed", unit="text", disable=not progress) as bar:
            for i in range(0, len(texts), step):
                out[i:i + step] = self._onnx.encode(texts[i:i + step])
                bar.update(len(texts[i:i + step]))
        return out
