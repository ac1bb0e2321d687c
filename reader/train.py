"""Fine-tuning a span reader on SQuAD: the `FineTuning` job that reader/loop.py's loop runs.

What is the reader's own lives here: the span loss, which layers train, the length-grouped
batches, evaluating with SQuAD's metrics and keeping the best checkpoint with its no-answer
threshold. Warm-up, accumulation, clipping, DDP and resuming are the loop's.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..runtime.hub import load_tokenizer
from .batching import collate, length_grouped_batches, random_batches
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .evaluation import eval_features
from .evaluation import evaluate as evaluate_reader
from .features import FeatureConfig, Features, build_features
from .loop import Job, Run, fit, resume_point, start_run
from .models import load_qa_model
from .squad import SquadExample, load_examples

log = logging.getLogger(__name__)


def train_labels(examples: list[SquadExample]) -> list[tuple[int, int] | None]:
    """Character span of each example's first gold answer; None when unanswerable."""
    spans = []
    for e in examples:
        if e.is_impossible or not e.answers:
            spans.append(None)
        else:
            a = e.answers[0]
            spans.append((a.start, a.start + len(a.text)))
    return spans


def span_loss(start_logits, end_logits, starts, ends, attention_mask) -> torch.Tensor:
    """Summed (not averaged) start/end cross-entropy over the real tokens of each window.

    Padding is masked out of the softmax, so the loss does not depend on how far a batch
    was padded; and the sum lets the caller normalise by the global batch. Together they
    make dynamic padding, accumulation and N processes all equal to one big batch.
    """
    pad = attention_mask == 0
    start = F.cross_entropy(start_logits.float().masked_fill(pad, -1e4), starts, reduction="sum")
    end = F.cross_entropy(end_logits.float().masked_fill(pad, -1e4), ends, reduction="sum")
    return (start + end) / 2


def freeze_lower_layers(model: torch.nn.Module, train_layers: int) -> None:
    """Keep the embeddings and all but the top `train_layers` transformer layers as loaded
    (0: train everything). Why: no backward pass runs below the lowest trained layer, so a
    short run on a CPU takes more steps in the same time (bench/demo_reader.py measures
    what that buys and costs)."""
    if train_layers <= 0:
        return
    base = model.base_model
    layers = base.encoder.layer
    if train_layers > len(layers):
        raise ValueError(f"train_layers {train_layers}: the model has {len(layers)} layers")
    for module in (base.embeddings, *layers[: len(layers) - train_layers]):
        module.requires_grad_(False)


def step_batches(cfg: TrainConfig, lengths: list[int], epoch: int, parts: int) -> list[list[int]]:
    """One batch of `batch_size` windows per optimizer step, whatever the processes and
    accumulation steps it is later split over (batches too short to split are dropped)."""
    if cfg.batching == "length":
        batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch)
    elif cfg.batching in ("random", "padded"):
        batches = random_batches(len(lengths), cfg.batch_size, cfg.seed, epoch)
    else:
        raise ValueError(f"batching must be length, random or padded, got {cfg.batching!r}")
    return [b for b in batches if len(b) >= parts]


@dataclass
class FineTuning(Job):
    """Span extraction: the start/end loss of SQuAD windows; dev F1 picks best/."""

    run: Run
    model: torch.nn.Module
    tokenizer: Any
    fcfg: FeatureConfig
    feats: Features
    dev_examples: list[SquadExample]
    dev_feats: Features | None
    version: str
    best: dict = field(default_factory=lambda: {"selection_f1": -1.0})
    sum_keys = ("loss", "windows")

    def __post_init__(self) -> None:
        cfg = self.run.cfg
        self.lengths = self.feats.lengths
        self.pad_to = cfg.max_seq_length if cfg.batching == "padded" else None
        self.meta = {"train_args": asdict(cfg), "version": self.version,
                     "feature_config": asdict(self.fcfg)}
        self.step_size = 0

    def batches(self, epoch: int) -> list[list[int]]:
        return step_batches(self.run.cfg, self.lengths, epoch, self.run.parts)

    def begin_step(self, batch: list[int]) -> None:
        self.step_size = len(batch)

    def loss(self, model: torch.nn.Module, chunk: list[int], sums: dict) -> torch.Tensor:
        batch = {key: v.to(self.run.device) for key, v in collate(
            self.feats, chunk, self.tokenizer.pad_token_id, self.pad_to).items()}
        out = model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                    attention_mask=batch["attention_mask"])
        loss = span_loss(out.start_logits, out.end_logits, batch["start_positions"],
                         batch["end_positions"], batch["attention_mask"])
        sums["loss"] += loss.item()
        sums["windows"] += len(chunk)
        # DDP averages over processes: this makes the result the global mean.
        return loss * self.run.env.world / self.step_size

    def train_losses(self, sums: dict, steps: int) -> dict[str, float]:
        return {"loss": sums["loss"] / max(sums["windows"], 1)}  # per window

    def evaluate(self) -> dict | None:
        """Dev scores; best/ (with predictions and threshold) when the F1 improves."""
        if self.dev_feats is None:
            return None
        run, cfg = self.run, self.run.cfg
        result = evaluate_reader(self.model, self.tokenizer, self.dev_examples, self.fcfg,
                                 version=self.version, features=self.dev_feats,
                                 batch_size=cfg.eval_batch_size or None, n_best=cfg.n_best,
                                 max_answer_length=cfg.max_answer_length, dtype=run.dtype)
        tqdm.write(f"step {run.step}: dev " + json.dumps(
            {k: round(v, 2) for k, v in result.metrics.items() if isinstance(v, float)}))
        self.model.train()
        scores = {"step": run.step, "epoch": run.step / run.steps_per_epoch, **result.summary()}
        if result.f1 > self.best["selection_f1"]:
            self.best = {"selection_f1": result.f1, **scores}
            save_checkpoint(run.out / "best", self.model, self.tokenizer,
                            {**self.meta, "scores": scores, "threshold": result.threshold})
            result.write(run.out / "best")
        return scores

    def save(self, state: dict) -> None:
        state.update(best=self.best, train_seconds=self.run.trained)
        save_checkpoint(self.run.out / "last", self.model, self.tokenizer,
                        {**self.meta, "step": self.run.step, "best": self.best}, state)

    def restore(self, state: dict) -> None:
        self.best = state["best"]
        self.run.trained = state.get("train_seconds", 0.0)
        # A re-planned run keeps its plan: the total its schedule was restored with.
        self.run.total = state["scheduler"]["lr_lambdas"][0]["total"]


def train(cfg: TrainConfig) -> dict:
    """Fine-tune and return a summary (best scores, throughput, wall time)."""
    run = start_run(cfg, log)
    env = run.env
    fcfg = cfg.features
    resume_from = resume_point(run)
    tokenizer = load_tokenizer(resume_from or cfg.model)
    dropout = {} if cfg.dropout < 0 else {"hidden_dropout_prob": cfg.dropout,
                                          "attention_probs_dropout_prob": cfg.dropout}
    model = load_qa_model(resume_from or cfg.model, **dropout).to(run.device)
    freeze_lower_layers(model, cfg.train_layers)

    train_examples, report = load_examples(cfg.train, split="train", for_training=True)
    if cfg.max_train_examples:
        train_examples = train_examples[: cfg.max_train_examples]
    if env.main:
        log.info("train data: %s", report.summary())
    dev_examples: list[SquadExample] = []
    version = report.version
    if cfg.dev:
        dev_examples, dev_report = load_examples(cfg.dev, split="validation")
        version = dev_report.version
        if cfg.max_dev_examples:
            dev_examples = dev_examples[: cfg.max_dev_examples]
        if env.main:
            log.info("dev data: %s", dev_report.summary())
    if not train_examples:
        raise ValueError(f"no usable training examples in {cfg.train}")

    feats: Features = build_features(
        tokenizer,
        [e.question for e in train_examples],
        [e.context for e in train_examples],
        fcfg,
        train_labels(train_examples),
        progress=run.show,
    )
    dev_feats = eval_features(tokenizer, dev_examples, fcfg, run.show) if dev_examples else None
    if not step_batches(cfg, feats.lengths, 0, run.parts):
        raise ValueError(f"{len(feats)} training windows cannot fill one step of {run.parts} "
                         "(grad_accum x processes)")
    job = FineTuning(run, model, tokenizer, fcfg, feats, dev_examples, dev_feats, version)
    fit(run, job, cfg.max_train_seconds, cfg.plan_seconds)
    wall = time.perf_counter() - run.began
    if dev_feats is None and env.main:
        # Without dev data the final weights are the best we know.
        save_checkpoint(run.out / "best", model, tokenizer,
                        {**job.meta, "scores": {}, "threshold": None})
    train_seconds = wall - run.eval_seconds
    summary = {"best": job.best, "steps": run.step, "planned_steps": run.total,
               "train_features": len(feats), "wall_seconds": wall,
               "train_seconds": train_seconds, "eval_seconds": run.eval_seconds,
               "features_per_second": run.seen / train_seconds if train_seconds else 0.0}
    if env.main:
        (run.out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
