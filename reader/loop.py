"""The training loop that reader fine-tuning and continued pretraining share.

`fit` is the loop: warm-up and linear decay, gradient accumulation, clipping, mixed
precision, data-parallel under torchrun, resumable checkpoints, metrics.jsonl, the progress
bar, a time budget, periodic evaluation. A `Job` says what differs: the batches, the loss
of a chunk, what an evaluation scores and what a checkpoint keeps (reader/train.py's
`FineTuning`, pretrain/train.py's `Pretraining`). `start_run` is what both do first.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..runtime.device import autocast, autocast_dtype, pick_device
from .checkpoint import load_trainer_state, read_meta, resolve_checkpoint
from .plots import plot_curves

REPLAN_EVERY = 10  # steps between re-plans of a run fitted to --plan-seconds


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class Run:
    """Where a run stands, shared by the loop (which advances it) and its job (which reads
    it): the settings, the processes, the run folder and the loop's counters and clocks."""

    cfg: Any  # TrainConfig or PretrainConfig: the loop reads the fields they share
    env: Dist
    device: torch.device
    out: Path
    log: logging.Logger  # the caller's: its messages name the command that runs
    resume_from: Path | None = None  # the last/ checkpoint to resume from
    dtype: torch.dtype | None = None  # autocast's; set by `fit`
    step: int = 0
    epoch: int = 0
    next_batch: int = 0  # within the epoch's batches
    total: int = 0  # the planned steps
    steps_per_epoch: int = 1
    history: list[dict] = field(default_factory=list)  # the scores of every evaluation
    trained: float = 0.0  # training seconds, evaluations excluded, over all parts of a run
    began: float = 0.0  # when this process started its loop (time.perf_counter)
    eval_seconds: float = 0.0  # of this part, evaluating and checkpointing
    seen: int = 0  # examples trained on in this part

    @property
    def parts(self) -> int:
        """Chunks an optimizer step's batch is split into, over processes and accumulation."""
        return self.cfg.grad_accum * self.env.world

    @property
    def show(self) -> bool:
        return self.cfg.progress and self.env.main


class Job:
    """What a run trains and how: subclasses set `model` (what trains; DDP wraps it) and
    `run`, and define the methods; the ones here that do nothing are optional."""

    name: ClassVar[str] = "train"  # the progress bar's label
    rate: ClassVar[tuple[str, str]] = ("features_per_s", "fps")  # throughput: metrics, bar
    sum_keys: ClassVar[tuple[str, ...]] = ("loss",)  # what `loss` adds up between log lines
    run: Run
    model: torch.nn.Module

    def batches(self, epoch: int) -> list[list[int]]:
        """The epoch's optimizer steps, as lists of example indices (a function of the seed)."""
        raise NotImplementedError

    def begin_step(self, batch: list[int]) -> None:
        """Before the forward passes of the step over `batch` (the whole global batch)."""

    def loss(self, model: torch.nn.Module, chunk: list[int], sums: dict) -> torch.Tensor:
        """The loss to back-propagate for this process's `chunk` of the step, such that the
        chunks' gradients add up (and DDP's mean over processes makes) the global batch's;
        adds what metrics.jsonl should log to `sums`."""
        raise NotImplementedError

    def before_update(self) -> None:
        """After the backward passes, before the optimizer step."""

    def train_losses(self, sums: dict, steps: int) -> dict[str, float]:
        """The losses to log from `sums` over `steps` steps (all processes' sums)."""
        raise NotImplementedError

    def evaluate(self) -> dict | None:
        """Rank 0 at an evaluation: the scores to log (None: nothing to evaluate on)."""
        return None

    def save(self, state: dict) -> None:
        """Write the resumable last/ checkpoint (rank 0), with the loop's `state` in it."""
        raise NotImplementedError

    def restore(self, state: dict) -> None:
        """Take back what `save` added to a checkpoint's state when the run resumes."""


def fit(run: Run, job: Job, max_seconds: float = 0, plan_seconds: float = 0) -> Run:
    """Train `job` to the planned step (or for `max_seconds` of training), evaluating and
    checkpointing along the way; `plan_seconds` fits the schedule to that much time."""
    cfg, env, device = run.cfg, run.env, run.device
    run.steps_per_epoch = len(job.batches(0))
    run.total = most = cfg.max_steps or math.ceil(cfg.epochs * run.steps_per_epoch)
    eval_every = max(1, run.steps_per_epoch // max(1, cfg.evals_per_epoch))
    optimizer = torch.optim.AdamW(optimizer_groups(job.model, cfg.weight_decay), lr=cfg.lr)
    scheduler = linear_schedule(optimizer, cfg.warmup, run.total)
    run.dtype = autocast_dtype(device, cfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=run.dtype == torch.float16)
    if run.resume_from is not None:
        state = restore_trainer_state(run, optimizer, scheduler, scaler)
        run.step, run.epoch, run.next_batch = state["step"], state["epoch"], state["next_batch"]
        run.history = state["history"]
        job.restore(state)
    metrics = MetricsLog(run.out / "metrics.jsonl", env.main, run.step if run.resume_from else None)
    ddp_model = data_parallel(job.model, env, device)
    bar = tqdm(total=run.total, initial=run.step, desc=job.name, unit="step", disable=not run.show)
    job.model.train()
    run.began, trained_before, window = time.perf_counter(), run.trained, Window(job.sum_keys)
    batches, batches_epoch = [], -1
    spent = bool(max_seconds) and run.trained >= max_seconds  # (resumed with none left)
    while run.step < run.total and not spent:
        if batches_epoch != run.epoch:  # each epoch has its own order, a function of the seed
            batches, batches_epoch = job.batches(run.epoch), run.epoch
        step_batch = batches[run.next_batch]
        job.begin_step(step_batch)
        chunks = split_step_batch(step_batch, cfg.grad_accum, env.rank, env.world)
        for k, chunk in enumerate(chunks):  # DDP averages the gradients at the last chunk
            last = env.world == 1 or k == len(chunks) - 1
            with (contextlib.nullcontext() if last else ddp_model.no_sync(),
                  autocast(device, run.dtype)):
                scaler.scale(job.loss(ddp_model, chunk, window.sums)).backward()
        run.seen += len(step_batch)
        window.steps, window.seen = window.steps + 1, window.seen + len(step_batch)
        job.before_update()
        optimizer_step(job.model, optimizer, scheduler, scaler, cfg.max_grad_norm)
        run.step, run.next_batch = run.step + 1, run.next_batch + 1
        if run.next_batch >= len(batches):
            run.epoch, run.next_batch = run.epoch + 1, 0
        bar.update(1)
        if run.step % cfg.log_every == 0 or run.step == run.total:
            log_train(run, job, window, scheduler.get_last_lr()[0], metrics, bar)
        run.trained = trained_before + time.perf_counter() - run.began - run.eval_seconds
        if plan_seconds and run.step % REPLAN_EVERY == 0 and run.step < run.total:
            # The schedule ends when the time budget does, on whatever machine this is:
            # the decay follows the steps that fit, and the run stops where it reaches 0.
            run.total = steps_that_fit(run.step, run.trained, plan_seconds, most, env, device)
            scheduler.lr_lambdas[0].total = bar.total = run.total
            bar.refresh()
        spent = out_of_training_time(max_seconds, run.trained, env, device)
        at_eval = run.step % eval_every == 0 or run.step == run.total or spent
        if at_eval or (cfg.save_steps and run.step % cfg.save_steps == 0):
            paused = time.perf_counter()
            checkpoint(run, job, at_eval, metrics, optimizer, scheduler, scaler)
            run.eval_seconds += time.perf_counter() - paused
            window.t += time.perf_counter() - paused
        if spent and env.main:
            run.log.warning("stopped at step %d of %d: --max-train-seconds %g reached",
                            run.step, run.total, max_seconds)
    bar.close()
    return run


def start_run(cfg: Any, log: logging.Logger) -> Run:
    """Join the processes torchrun started (if any), make the run folder, check that each
    step's batch splits over them, seed torch."""
    env, device = setup_distributed(cfg.device)
    run = Run(cfg, env, device, Path(cfg.out), log)
    if env.main:
        run.out.mkdir(parents=True, exist_ok=True)
    if cfg.batch_size % run.parts:
        raise ValueError(
            f"batch_size {cfg.batch_size} must split evenly into grad_accum {cfg.grad_accum} "
            f"steps of {env.world} processes"
        )
    torch.manual_seed(cfg.seed)
    return run


def resume_point(run: Run) -> Path | None:
    """The last/ checkpoint a --resume run continues from (None: none, or no --resume)."""
    run.resume_from = resolve_checkpoint(run.out / "last") if run.cfg.resume else None
    if run.cfg.resume and run.resume_from is None and run.env.main:
        run.log.warning("--resume: no checkpoint in %s/last, starting from scratch", run.out)
    return run.resume_from


class Window:
    """What the next train line of metrics.jsonl logs: the sums since the last line, and
    the steps and examples it covers since time `t`."""

    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys
        self.reset(time.perf_counter())

    def reset(self, t: float) -> None:
        self.sums, self.steps, self.seen, self.t = dict.fromkeys(self.keys, 0.0), 0, 0, t


def log_train(run: Run, job: Job, window: Window, lr: float, metrics: MetricsLog,
              bar: tqdm) -> None:
    """A train line in metrics.jsonl (and the bar's figures) for the steps since the last,
    with the losses of the global batch, not of this process; then a new window."""
    sums = window.sums
    if run.env.world > 1:  # this process's sums are its share of each step's
        totals = torch.tensor(list(sums.values()), dtype=torch.float64, device=run.device)
        dist.all_reduce(totals)
        sums = dict(zip(sums, totals.tolist(), strict=True))
    now = time.perf_counter()
    rate = window.seen / max(now - window.t, 1e-9)
    record = {"type": "train", "step": run.step, "epoch": round(run.step / run.steps_per_epoch, 4),
              **job.train_losses(sums, window.steps), "lr": lr, job.rate[0]: rate}
    metrics.write(**record)
    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.2e}", **{job.rate[1]: f"{rate:.1f}"})
    window.reset(now)


def checkpoint(run: Run, job: Job, evaluate: bool, metrics: MetricsLog,
               optimizer: torch.optim.Optimizer, scheduler: Any,
               scaler: torch.amp.GradScaler) -> None:
    """Evaluate (rank 0) and log the scores, if `evaluate`; then save the resumable last/:
    optimizer, schedule, loss scale, the loop's counters and every process's RNG (all
    processes take part; rank 0 writes, with the job's own state)."""
    scores = job.evaluate() if evaluate and run.env.main else None
    if scores is not None:
        run.history.append(scores)
        metrics.write(type="eval", **scores)
        plot_curves(run.out / "metrics.jsonl", run.out / "curves.png")
    rng = gather_rng_states(run.env, run.device)
    if run.env.main:
        job.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                  "scaler": scaler.state_dict(), "step": run.step, "epoch": run.epoch,
                  "next_batch": run.next_batch, "history": run.history, "rng": rng})
    if run.env.world > 1:
        dist.barrier()


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


def steps_that_fit(step: int, trained: float, budget: float, most: int, env: Dist,
                   device: torch.device) -> int:
    """How many steps the run takes in all if the rest goes at the pace so far: at least
    one more, at most `most`. Rank 0's clock decides for every process."""
    fits = step + int(max(0.0, budget - trained) / max(trained / step, 1e-9))
    plan = torch.tensor([float(max(step + 1, min(most, fits)))], device=device)
    if env.world > 1:
        dist.broadcast(plan, src=0)
    return int(plan.item())


def out_of_training_time(max_seconds: float, trained: float, env: Dist,
                         device: torch.device) -> bool:
    """Whether the time cap (0: none) is spent. Rank 0's clock decides for every process,
    so all of them stop after the same step."""
    if not max_seconds:
        return False
    flag = torch.tensor([float(trained >= max_seconds)], device=device)
    if env.world > 1:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


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


def restore_trainer_state(run: Run, optimizer: torch.optim.Optimizer, scheduler: Any,
                          scaler: torch.amp.GradScaler) -> dict:
    """Resume from `run.resume_from`: refuse changed settings, restore the optimizer,
    schedule, loss scale and this process's RNG; return the rest of the state (the loop's
    own counters and the job's)."""
    path = run.resume_from
    check_same_run(run.cfg, read_meta(path).get("train_args", {}))
    state = load_trainer_state(path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"][run.env.rank % len(state["rng"])], run.device)
    if run.env.main:
        run.log.info("resumed from %s at step %d", path, state["step"])
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
    processes. Batches hold at least grad_accum * world windows (the jobs' `batches` drop
    shorter ones), so no process ever gets an empty chunk, which would leave DDP waiting."""
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
