"""Fine-tuning a span reader on SQuAD: one loop, resumable, data-parallel under torchrun.

The loop is step-based. The batch order is a pure function of (seed, epoch) and every
process takes its slice of the same global batch, so a run resumed from its `last/`
checkpoint, or spread over several processes, follows the same trajectory as one
uninterrupted single-process run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..runtime.device import autocast, autocast_dtype, pick_device
from ..runtime.hub import load_tokenizer
from .batching import collate, length_grouped_batches, random_batches
from .checkpoint import load_trainer_state, read_meta, resolve_checkpoint, save_checkpoint
from .evaluation import EvalResult, eval_features, evaluate
from .features import FeatureConfig, Features, build_features
from .models import load_qa_model
from .plots import plot_curves
from .squad import SquadExample, load_examples

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    train: str
    out: str
    dev: str | None = None
    model: str = "minilm"
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    batch_size: int = 16  # examples per optimizer step, over all processes and accumulation
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    max_grad_norm: float = 1.0  # clip the gradient norm at this (0: no clipping)
    train_layers: int = 0  # train only the top N transformer layers and the head (0: all)
    dropout: float = -1.0  # hidden and attention dropout while training (< 0: the model's own)
    epochs: float = 2.0
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs)
    max_train_seconds: float = 0  # stop once training (evaluations excluded) took this long
    plan_seconds: float = 0  # fit the schedule to this much training time (0: plan by steps)
    seed: int = 42
    evals_per_epoch: int = 4
    eval_batch_size: int = 0  # windows per forward pass in evaluations; 0: the device's best
    save_steps: int = 0  # extra resumable checkpoints between evaluations (0: at evals only)
    batching: str = "length"  # length (grouped + dynamic padding) | random (dynamic) | padded
    precision: str = "auto"
    max_train_examples: int = 0
    max_dev_examples: int = 0
    n_best: int = 20
    max_answer_length: int = 30
    log_every: int = 10
    device: str | None = None
    resume: bool = False
    progress: bool = True

    @property
    def features(self) -> FeatureConfig:
        return FeatureConfig(self.max_seq_length, self.doc_stride, self.max_query_length)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None) -> tuple[Dist, torch.device]:
    """Join the process group that torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), pick_device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank), torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")


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


@dataclass
class LinearSchedule:
    """The learning-rate factor at a step: linear warm-up to 1, then linear decay to 0 at
    `total`. A callable object rather than a closure because the scheduler's state_dict
    keeps an object's fields: a run re-planned to a time budget resumes with its plan."""

    warmup: int
    total: int

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: float,
                    total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """`warmup` (a share of `total` steps) then linear decay: the BERT recipe's schedule."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LinearSchedule(int(warmup * total), total))


REPLAN_EVERY = 10  # steps between re-plans of a run fitted to --plan-seconds


def steps_that_fit(step: int, trained: float, budget: float, most: int, env: Dist,
                   device: torch.device) -> int:
    """How many steps the run takes in all if the rest goes at the pace so far: at least
    one more, at most `most`. Rank 0's clock decides for every process."""
    fits = step + int(max(0.0, budget - trained) / max(trained / step, 1e-9))
    plan = torch.tensor([float(max(step + 1, min(most, fits)))], device=device)
    if env.world > 1:
        dist.broadcast(plan, src=0)
    return int(plan.item())


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only: not on biases and LayerNorm parameters."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
        (no_decay if skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


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


def restore_trainer_state(path: Path, cfg: Any, optimizer: torch.optim.Optimizer,
                          scheduler: Any, scaler: torch.amp.GradScaler, env: Dist,
                          device: torch.device) -> dict:
    """Resume from checkpoint `path`: refuse changed settings, restore the optimizer,
    schedule, loss scale and this process's RNG; return the rest of the state (the loop's
    own counters)."""
    check_same_run(cfg, read_meta(path).get("train_args", {}))
    state = load_trainer_state(path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"][env.rank % len(state["rng"])], device)
    if env.main:
        log.info("resumed from %s at step %d", path, state["step"])
    return state


def data_parallel(model: torch.nn.Module, env: Dist, device: torch.device) -> torch.nn.Module:
    """The model wrapped for DDP when torchrun started several processes; else itself."""
    if env.world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: Any, scaler: torch.amp.GradScaler, max_grad_norm: float) -> None:
    """Clip the gradient norm (unless `max_grad_norm` is 0), step (unscaling fp16 gradients
    first), advance the learning rate, clear the gradients."""
    scaler.unscale_(optimizer)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def split_step_batch(batch: list[int], grad_accum: int, rank: int, world: int) -> list[list[int]]:
    """This process's share of each accumulation step: `grad_accum` contiguous chunks
    (similar lengths) of sizes that differ by at most one, dealt out round-robin over the
    processes. Batches hold at least grad_accum * world windows (`step_batches`), so no
    process ever gets an empty chunk, which would leave DDP waiting for it."""
    bounds = [k * len(batch) // grad_accum for k in range(grad_accum + 1)]
    return [batch[lo:hi][rank::world] for lo, hi in itertools.pairwise(bounds)]


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def gather_rng_states(env: Dist, device: torch.device) -> list[dict]:
    """Every process's RNG state, by rank (a resumed process restores its own)."""
    if env.world == 1:
        return [rng_state(device)]
    states: list = [None] * env.world
    dist.all_gather_object(states, rng_state(device))
    return states


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


_RESUMABLE_CHANGES = {"resume", "progress", "out", "device", "log_every", "max_train_seconds"}


def check_same_run(cfg: Any, stored: dict) -> None:
    """Resuming with other settings would not finish as the original run: refuse it."""
    changed = {k: (stored.get(k), v) for k, v in asdict(cfg).items()
               if k not in _RESUMABLE_CHANGES and k in stored and stored[k] != v}
    if changed:
        listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"--resume with settings that differ from the checkpoint's ({listed})")


def out_of_training_time(cfg: TrainConfig, trained: float, env: Dist,
                         device: torch.device) -> bool:
    """Whether the time cap is spent. Rank 0's clock decides for every process, so all of
    them stop after the same step."""
    if not cfg.max_train_seconds:
        return False
    flag = torch.tensor([float(trained >= cfg.max_train_seconds)], device=device)
    if env.world > 1:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


class MetricsLog:
    """metrics.jsonl: one JSON object per log line, truncated to the step a run resumes at."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.exists():
            keep = [
                line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= resume_step
            ]
            path.write_text("".join(line + "\n" for line in keep))
        elif enabled and resume_step is None:
            path.write_text("")

    def write(self, **record) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def train(cfg: TrainConfig) -> dict:
    """Fine-tune and return a summary (best scores, throughput, wall time)."""
    env, device = setup_distributed(cfg.device)
    out = Path(cfg.out)
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
    parts = cfg.grad_accum * env.world
    if cfg.batch_size % parts:
        raise ValueError(
            f"batch_size {cfg.batch_size} must split evenly into grad_accum {cfg.grad_accum} "
            f"steps of {env.world} processes"
        )
    torch.manual_seed(cfg.seed)
    fcfg = cfg.features
    resume_from = resolve_checkpoint(out / "last") if cfg.resume else None
    if cfg.resume and resume_from is None and env.main:
        log.warning("--resume: no checkpoint in %s/last, starting from scratch", out)
    tokenizer = load_tokenizer(resume_from or cfg.model)
    dropout = {} if cfg.dropout < 0 else {"hidden_dropout_prob": cfg.dropout,
                                          "attention_probs_dropout_prob": cfg.dropout}
    model = load_qa_model(resume_from or cfg.model, **dropout).to(device)
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

    show = cfg.progress and env.main
    feats: Features = build_features(
        tokenizer,
        [e.question for e in train_examples],
        [e.context for e in train_examples],
        fcfg,
        train_labels(train_examples),
        progress=show,
    )
    dev_feats = eval_features(tokenizer, dev_examples, fcfg, show) if dev_examples else None
    lengths = feats.lengths

    steps_per_epoch = len(step_batches(cfg, lengths, 0, parts))
    if not steps_per_epoch:
        raise ValueError(f"{len(feats)} training windows cannot fill one step of {parts} "
                         "(grad_accum x processes)")
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)
    eval_every = max(1, steps_per_epoch // max(1, cfg.evals_per_epoch))

    optimizer = torch.optim.AdamW(optimizer_groups(model, cfg.weight_decay), lr=cfg.lr)
    most_steps = total_steps
    scheduler = linear_schedule(optimizer, cfg.warmup, total_steps)
    dtype = autocast_dtype(device, cfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    step, epoch, next_batch, trained_before = 0, 0, 0, 0.0
    best: dict = {"selection_f1": -1.0}
    history: list[dict] = []
    if resume_from is not None:
        state = restore_trainer_state(resume_from, cfg, optimizer, scheduler, scaler, env,
                                      device)
        step, epoch, next_batch = state["step"], state["epoch"], state["next_batch"]
        best, history = state["best"], state["history"]
        trained_before = state.get("train_seconds", 0.0)
        total_steps = scheduler.lr_lambdas[0].total  # a re-planned run keeps its plan
    metrics_log = MetricsLog(out / "metrics.jsonl", env.main, step if resume_from else None)
    ddp_model = data_parallel(model, env, device)
    pad_to = cfg.max_seq_length if cfg.batching == "padded" else None
    meta = {"train_args": asdict(cfg), "version": version, "feature_config": asdict(fcfg)}

    def checkpoint(result: EvalResult | None) -> None:
        """Evaluate-and-save point: best/ when the dev F1 improves, last/ always (rank 0)."""
        nonlocal best
        if result is not None:
            scores = {"step": step, "epoch": step / steps_per_epoch, **result.summary()}
            history.append(scores)
            metrics_log.write(type="eval", **scores)
            if result.f1 > best["selection_f1"]:
                best = {"selection_f1": result.f1, **scores}
                save_checkpoint(out / "best", model, tokenizer,
                                {**meta, "scores": scores, "threshold": result.threshold})
                result.write(out / "best")
            plot_curves(out / "metrics.jsonl", out / "curves.png")
        rng = gather_rng_states(env, device)
        if env.main:
            state = {
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "step": step, "epoch": epoch,
                "next_batch": next_batch, "best": best, "history": history, "rng": rng,
                "train_seconds": trained,
            }
            save_checkpoint(out / "last", model, tokenizer,
                            {**meta, "step": step, "best": best}, state)

    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not show)
    model.train()
    began = time.perf_counter()
    eval_seconds = 0.0
    seen, loss_sum, loss_n, window_t, window_seen = 0, 0.0, 0, time.perf_counter(), 0
    batches, batches_epoch = [], -1
    trained = trained_before
    spent = bool(cfg.max_train_seconds) and trained_before >= cfg.max_train_seconds
    while step < total_steps and not spent:  # (a resumed run may have spent its time already)
        if batches_epoch != epoch:  # each epoch has its own order, a function of the seed
            batches, batches_epoch = step_batches(cfg, lengths, epoch, parts), epoch
        step_batch = batches[next_batch]
        chunks = split_step_batch(step_batch, cfg.grad_accum, env.rank, env.world)
        for k, local in enumerate(chunks):
            batch = {key: v.to(device) for key, v in collate(
                feats, local, tokenizer.pad_token_id, pad_to).items()}
            last_chunk = k == len(chunks) - 1
            sync = ddp_model.no_sync() if env.world > 1 and not last_chunk else None
            with sync or contextlib.nullcontext(), autocast(device, dtype):
                out_ = ddp_model(input_ids=batch["input_ids"],
                                 token_type_ids=batch["token_type_ids"],
                                 attention_mask=batch["attention_mask"])
                loss = span_loss(out_.start_logits, out_.end_logits,
                                 batch["start_positions"], batch["end_positions"],
                                 batch["attention_mask"])
                # DDP averages over processes: this makes the result the global mean.
                scaler.scale(loss * env.world / len(step_batch)).backward()
            loss_sum += loss.item()
            loss_n += len(local)
        seen += len(step_batch)
        window_seen += len(step_batch)
        optimizer_step(model, optimizer, scheduler, scaler, cfg.max_grad_norm)
        step += 1
        next_batch += 1
        if next_batch >= len(batches):
            epoch, next_batch = epoch + 1, 0
        bar.update(1)
        if step % cfg.log_every == 0 or step == total_steps:
            if env.world > 1:  # log the loss of the global batch, not of this process
                totals = torch.tensor([loss_sum, loss_n], dtype=torch.float64, device=device)
                dist.all_reduce(totals)
                loss_sum, loss_n = totals[0].item(), int(totals[1].item())
            now = time.perf_counter()
            rate = window_seen / max(now - window_t, 1e-9)
            lr = scheduler.get_last_lr()[0]
            record = {"type": "train", "step": step, "epoch": round(step / steps_per_epoch, 4),
                      "loss": loss_sum / max(loss_n, 1), "lr": lr, "features_per_s": rate}
            metrics_log.write(**record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.2e}", fps=f"{rate:.1f}")
            loss_sum, loss_n, window_t, window_seen = 0.0, 0, now, 0
        trained = trained_before + time.perf_counter() - began - eval_seconds
        if cfg.plan_seconds and step % REPLAN_EVERY == 0 and step < total_steps:
            # The schedule ends when the time budget does, on whatever machine this is:
            # the decay follows the steps that fit, and the run stops where it reaches 0.
            total_steps = steps_that_fit(step, trained, cfg.plan_seconds, most_steps, env,
                                         device)
            scheduler.lr_lambdas[0].total = total_steps
            bar.total = total_steps
            bar.refresh()
        out_of_time = out_of_training_time(cfg, trained, env, device)
        at_eval = step % eval_every == 0 or step == total_steps or out_of_time
        if at_eval or (cfg.save_steps and step % cfg.save_steps == 0):
            result = None
            paused = time.perf_counter()
            if at_eval and dev_feats is not None and env.main:
                result = evaluate(model, tokenizer, dev_examples, fcfg, version=version,
                                  features=dev_feats, batch_size=cfg.eval_batch_size or None,
                                  n_best=cfg.n_best, max_answer_length=cfg.max_answer_length,
                                  dtype=dtype)
                bar.write(f"step {step}: dev " + json.dumps(
                    {k: round(v, 2) for k, v in result.metrics.items()
                     if isinstance(v, float)}))
                model.train()
            checkpoint(result)
            if env.world > 1:
                dist.barrier()
            eval_seconds += time.perf_counter() - paused
            window_t += time.perf_counter() - paused
        if out_of_time:
            if env.main:
                log.warning("stopped at step %d of %d: --max-train-seconds %g reached", step,
                            total_steps, cfg.max_train_seconds)
            break
    bar.close()
    wall = time.perf_counter() - began
    if dev_feats is None and env.main:
        # Without dev data the final weights are the best we know.
        save_checkpoint(out / "best", model, tokenizer, {**meta, "scores": {}, "threshold": None})
    train_seconds = wall - eval_seconds
    summary = {"best": best, "steps": step, "planned_steps": total_steps,
               "train_features": len(feats), "wall_seconds": wall,
               "train_seconds": train_seconds, "eval_seconds": eval_seconds,
               "features_per_second": seen / train_seconds if train_seconds else 0.0}
    if env.main:
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
