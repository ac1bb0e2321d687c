"""Dev-set evaluation: predictions in the official formats and the official metrics."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from .features import FeatureConfig, Features, build_features
from .inference import predict_logits
from .metrics import squad_v1, squad_v2
from .postprocess import Prediction, postprocess
from .runner import SpanRunner
from .squad import SquadExample, to_official_json


@dataclass
class EvalResult:
    version: str
    metrics: dict
    predictions: dict[str, str]
    nbest: dict[str, list[dict]]
    null_odds: dict[str, float]
    threshold: float | None  # best - null score an answer needs (v2.0); None for v1.1
    features: int
    seconds: float

    @property
    def f1(self) -> float:
        """The model-selection score: F1 (v1.1) or F1 at the tuned threshold (v2.0)."""
        return self.metrics["best_f1"] if self.version == "2.0" else self.metrics["f1"]

    @property
    def features_per_second(self) -> float:
        return self.features / self.seconds if self.seconds else 0.0

    def write(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, obj in (
            ("predictions.json", self.predictions),
            ("nbest_predictions.json", self.nbest),
            ("null_odds.json", self.null_odds),
            ("eval_results.json", self.summary()),
        ):
            (out / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")

    def summary(self) -> dict:
        return {
            "version": self.version,
            **self.metrics,
            "threshold": self.threshold,
            "features": self.features,
            "seconds": round(self.seconds, 3),
            "features_per_second": round(self.features_per_second, 3),
        }


def eval_features(
    tokenizer: PreTrainedTokenizerFast,
    examples: list[SquadExample],
    config: FeatureConfig,
    progress: bool = False,
) -> Features:
    return build_features(
        tokenizer,
        [e.question for e in examples],
        [e.context for e in examples],
        config,
        progress=progress,
    )


def evaluate(
    model: SpanRunner | PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    examples: list[SquadExample],
    config: FeatureConfig,
    *,
    version: str,
    features: Features | None = None,
    threshold: float | None = None,
    tune_threshold: bool = True,
    batch_size: int | None = None,
    n_best: int = 20,
    max_answer_length: int = 30,
    dtype: torch.dtype | None = None,
    progress: bool = False,
) -> EvalResult:
    """Predict every example and score with the official metrics.

    `model` is a `SpanRunner` (`Reader.runner`) or a PyTorch span model.

    For v2.0 the no-answer threshold is tuned on these examples (best F1 over null odds,
    the official script's search) unless a `threshold` is given with `tune_threshold`
    off; predictions.json and exact/f1 use that threshold, best_* the tuned one.
    """
    features = features or eval_features(tokenizer, examples, config, progress)
    began = time.perf_counter()
    starts, ends = predict_logits(
        model, features, pad_id=tokenizer.pad_token_id, batch_size=batch_size, dtype=dtype,
        progress=progress,
    )
    preds = postprocess(
        features, starts, ends, [e.context for e in examples],
        n_best=n_best, max_answer_length=max_answer_length, with_null=version == "2.0",
    )
    seconds = time.perf_counter() - began
    dataset = to_official_json(examples)["data"]
    null_odds = {e.id: p.null_odds for e, p in zip(examples, preds, strict=True)}
    if version == "2.0":
        # Tune on always-answer predictions, so the threshold search sees every span.
        unblanked = _texts(examples, preds, float("-inf"))
        tuned = squad_v2(dataset, unblanked, null_odds, na_prob_thresh=float("inf"))
        if tune_threshold or threshold is None:
            threshold = -tuned["best_f1_thresh"]
        texts = _texts(examples, preds, threshold)
        metrics = squad_v2(dataset, texts, na_prob_thresh=float("inf"))
        metrics.update({k: v for k, v in tuned.items() if k.startswith("best_")})
    else:
        threshold = None
        texts = _texts(examples, preds, None)
        metrics = squad_v1(dataset, texts)
    nbest = {
        e.id: [
            {"text": a.text, "probability": a.probability, "score": a.score,
             "start": a.start, "end": a.end}
            for a in p.answers
        ]
        for e, p in zip(examples, preds, strict=True)
    }
    return EvalResult(
        version=version, metrics=dict(metrics), predictions=texts, nbest=nbest,
        null_odds=null_odds, threshold=threshold, features=len(features), seconds=seconds,
    )


def _texts(
    examples: list[SquadExample], preds: list[Prediction], threshold: float | None
) -> dict[str, str]:
    return {e.id: p.text(threshold) for e, p in zip(examples, preds, strict=True)}
