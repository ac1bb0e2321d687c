"""The Python API the retriever pipeline and the HTTP service call."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from ..runtime.device import inference_dtype, pick_device
from ..runtime.hub import load_tokenizer
from .backends import build_runner
from .checkpoint import read_meta, resolve_checkpoint
from .features import FeatureConfig, build_features
from .inference import predict_logits
from .models import load_qa_model
from .postprocess import Answer, Prediction, postprocess
from .ranking import rank, spans

log = logging.getLogger(__name__)


class Reader:
    """Extracts answer spans from contexts, ranked across contexts by start+end logits.

    `null_threshold` is set for SQuAD 2.0 models: a span is returned only when its score
    beats its context's null ([CLS]) score by at least the threshold tuned on dev data.
    `backend` "auto" reads with PyTorch on a GPU and with OpenVINO on a CPU (in bf16
    where the CPU has native bf16 units, twice fp32's speed there); without OpenVINO, with
    the fused ONNX Runtime graph in fp32 and PyTorch in bf16 (reader/backends.py).
    "onnx-int8" trades a little F1 for more speed (bench/reader.py measures each), and its
    activations are quantised with one scale per batch, so a question's scores move
    slightly with the others read beside it. `runner` computes the logits; it is a
    snapshot of `model` taken here (for OpenVINO and ONNX, a second copy of the weights in
    memory; for PyTorch in bf16 on a CPU, a bf16 copy). With `keep_model=False` that copy
    is all that is kept (`model` becomes None), as the question-answering pipeline does.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerFast,
        *,
        config: FeatureConfig | None = None,
        null_threshold: float | None = None,
        batch_size: int | None = None,
        n_best: int = 20,
        max_answer_length: int = 30,
        device: str | torch.device | None = None,
        precision: str = "auto",
        backend: str = "auto",
        keep_model: bool = True,
    ):
        if device is None and backend not in ("auto", "torch"):
            device = "cpu"  # the compiled backends run on the CPU, even where there is a GPU
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.dtype = inference_dtype(self.device, precision)
        if backend in ("onnx", "onnx-int8"):  # the ONNX graphs read in fp32 (or int8)
            if precision not in ("auto", "fp32"):
                raise ValueError(f"the {backend} backend reads in fp32 or int8, not "
                                 f"{precision}; use the torch backend for {precision}")
            self.dtype = None
        if backend == "openvino" and self.dtype not in (None, torch.bfloat16):
            raise ValueError(f"the openvino backend reads in fp32 or bf16, not {precision}")
        self.backend, self.runner = build_runner(model, tokenizer, backend, self.device, self.dtype)
        if not keep_model and getattr(self.runner, "model", None) is not self.model:
            # A compiled graph or a bf16 copy reads; the fp32 weights would only sit in
            # memory (a SpanBERT-base's are 0.4 GB). Training and evaluation need them.
            self.model = None
        self.tokenizer = tokenizer
        self.config = config or FeatureConfig()
        self.null_threshold = null_threshold
        self.batch_size = batch_size
        self.n_best = n_best
        self.max_answer_length = max_answer_length

    @property
    def dtype_name(self) -> str:
        """What the logits are computed in, for reports: float32, bfloat16 or float16.

        For OpenVINO, what its runtime says it computes in: asked for bf16 on a CPU
        without bf16 units, it reads in fp32."""
        ran = self.runner.precision
        if ran is not None:
            return {"bf16": "bfloat16", "f32": "float32", "f16": "float16"}.get(ran, ran)
        return str(self.dtype or torch.float32).removeprefix("torch.")

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs) -> Reader:
        """Load a SpanQA training run, a checkpoint directory, or a hub model.

        A training run directory resolves to its best checkpoint; the checkpoint's
        feature settings and tuned no-answer threshold come with it.
        """
        path = Path(name_or_path)
        if (path / "best").is_dir():
            path = path / "best"
        checkpoint = resolve_checkpoint(path) if path.is_dir() else None
        source = str(checkpoint or name_or_path)
        meta = read_meta(checkpoint) if checkpoint else {}
        if checkpoint is None and path.is_dir():
            log.info("%s is not a SpanQA checkpoint; loading it as a plain model", path)
        fc = meta.get("feature_config")
        kwargs.setdefault("config", FeatureConfig(**fc) if fc else None)
        kwargs.setdefault("null_threshold", meta.get("threshold"))
        return cls(load_qa_model(source), load_tokenizer(source), **kwargs)

    def answer(self, question: str, contexts: Sequence[str], top_k: int = 1) -> list[Answer]:
        """The best `top_k` spans for one question over several contexts (may be empty)."""
        return self.answer_many([question], [contexts], top_k=top_k)[0]

    def answer_many(
        self, questions: Sequence[str], contexts: Sequence[Sequence[str]], top_k: int = 1
    ) -> list[list[Answer]]:
        """Answers for many questions at once: one forward pass over all their windows."""
        pooled: list[list[Answer]] = []
        for predictions in self.predict(questions, contexts):
            kept = [s for s in spans(predictions)
                    if self.null_threshold is None or s.margin >= self.null_threshold]
            ranked = rank(kept, score=lambda s: s.score)
            probs = np.zeros(len(ranked))
            if ranked:
                scores = np.array([score for score, _ in ranked])
                probs = np.exp(scores - scores.max())
                probs /= probs.sum()
            pooled.append([replace(s.answer, probability=float(p))
                           for (_, s), p in zip(ranked[: max(top_k, 0)], probs, strict=False)])
        return pooled

    def predict(
        self, questions: Sequence[str], contexts: Sequence[Sequence[str]]
    ) -> list[list[Prediction]]:
        """Every candidate span with its raw score, and the null score, per question and context.

        The pipeline ranks across passages from these raw scores; nothing is filtered here.
        """
        if len(questions) != len(contexts):
            raise ValueError("one list of contexts is needed per question")
        pairs = [(qi, ci) for qi, ctxs in enumerate(contexts) for ci in range(len(ctxs))]
        out: list[list[Prediction]] = [[] for _ in questions]
        if not pairs:
            return out
        flat = [contexts[qi][ci] for qi, ci in pairs]
        features = build_features(
            self.tokenizer, [questions[qi] for qi, _ in pairs], flat, self.config
        )
        starts, ends = predict_logits(
            self.runner, features, pad_id=self.tokenizer.pad_token_id,
            batch_size=self.batch_size, device=self.device, dtype=self.dtype,
        )
        predictions = postprocess(
            features, starts, ends, flat,
            n_best=self.n_best, max_answer_length=self.max_answer_length,
            with_null=self.null_threshold is not None,
        )
        for (qi, ci), prediction in zip(pairs, predictions, strict=True):
            out[qi].append(prediction.in_context(ci))
        return out

