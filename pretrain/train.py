"""Continued pretraining with span masking and the span boundary objective.

The same machinery as reader fine-tuning (reader/train.py): step-based and resumable,
warm-up and linear decay, accumulation, clipping, mixed precision on GPUs, data-parallel
under torchrun, atomic safetensors checkpoints, metrics.jsonl and a loss plot. The result,
OUT/encoder, is an ordinary masked-LM checkpoint: `spanqa reader train --model OUT/encoder`
puts a fresh span head on it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..reader.batching import random_batches
from ..reader.checkpoint import resolve_checkpoint, save_checkpoint
from ..reader.plots import plot_curves
from ..reader.train import (
    MetricsLog,
    data_parallel,
    gather_rng_states,
    linear_schedule,
    optimizer_groups,
    optimizer_step,
    restore_trainer_state,
    setup_distributed,
    split_step_batch,
)
from ..runtime.device import autocast, autocast_dtype
from ..runtime.hub import load_tokenizer
from .batches import Specials, collate, count_sbo_targets, mask_block
from .corpus import Block, build_blocks, unigram_counts
from .masking import IGNORE, MaskingConfig, UnigramSampler
from .model import SpanBertPretrainer, load_mlm_model

log = logging.getLogger(__name__)

HELD_OUT_EPOCH = 1_000_003  # masking seed of the held-out blocks: the same at every evaluation


@dataclass
class PretrainConfig:
    text: list[str] = field(default_factory=list)  # index folders, files or folders
    out: str = "data/pretrained"
    model: str = "minilm"
    masking: str = "span"  # span (SpanBERT) | token (BERT, for ablations)
    sbo: bool = True  # the span boundary objective (needs masking=span to mean anything)
    max_seq_length: int = 256
    mask_ratio: float = 0.15
    geometric_p: float = 0.2
    max_span_words: int = 10
    sbo_max_positions: int = 30
    batch_size: int = 32  # blocks per optimizer step, over all processes and accumulation
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.1
    max_grad_norm: float = 1.0  # 0: no clipping
    # First steps that train only the new heads, the encoder (word embeddings included)
    # frozen: a checkpoint without an MLM head would otherwise take random heads' gradients.
    head_steps: int = 0
    epochs: float = 3.0
    max_steps: int = 0
    seed: int = 42
    held_out: float = 0.02  # share of blocks kept aside to measure the loss on
    evals_per_epoch: int = 2
    save_steps: int = 0
    precision: str = "auto"
    log_every: int = 10
    device: str | None = None
    resume: bool = False
    progress: bool = True

    @property
    def masking_config(self) -> MaskingConfig:
        return MaskingConfig(self.mask_ratio, self.geometric_p, self.max_span_words)


def split_held_out(blocks: list[Block], share: float, seed: int) -> tuple[list[Block], list[Block]]:
    """(held-out, training) blocks; at least one held out when there are two or more."""
    if share <= 0 or len(blocks) < 2:
        return [], blocks
    n = min(len(blocks) - 1, max(1, round(len(blocks) * share)))
    order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed)).tolist()
    held = set(order[:n])
    return ([b for i, b in enumerate(blocks) if i in held],
            [b for i, b in enumerate(blocks) if i not in held])


def _loss(out: dict[str, torch.Tensor], mlm_n: int, sbo_n: int) -> torch.Tensor:
    loss = out["mlm_loss"] / max(mlm_n, 1)
    if "sbo_loss" in out:
        loss = loss + out["sbo_loss"] / max(sbo_n, 1)
    return loss


@torch.inference_mode()
def held_out_loss(model: SpanBertPretrainer, blocks: list[Block], cfg: PretrainConfig,
                  specials: Specials, sampler: UnigramSampler, device: torch.device,
                  dtype) -> dict[str, float]:
    """MLM and SBO losses per target on the held-out blocks, masked the same way each time."""
    model.eval()
    sums = {"mlm_loss": 0.0, "sbo_loss": 0.0, "mlm_targets": 0, "sbo_targets": 0}
    for lo in range(0, len(blocks), cfg.batch_size):
        masked = [mask_block(b, lo + i, cfg.seed, HELD_OUT_EPOCH, cfg.masking, specials,
                             sampler, cfg.masking_config)
                  for i, b in enumerate(blocks[lo:lo + cfg.batch_size])]
        batch = {k: v.to(device) for k, v in
                 collate(masked, specials, cfg.sbo_max_positions).items()}
        with autocast(device, dtype):
            out = model(batch)
        for key in sums:
            if key in out:
                sums[key] += out[key].item()
    model.train()
    result = {"mlm_loss": sums["mlm_loss"] / max(sums["mlm_targets"], 1)}
    if cfg.sbo:
        result["sbo_loss"] = sums["sbo_loss"] / max(sums["sbo_targets"], 1)
    result["loss"] = sum(result.values())
    return result


def approx_flops(model: SpanBertPretrainer, seen: dict) -> float:
    """Training FLOPs: 6 per weight per token for the encoder's matrices (forward and
    backward; embedding look-ups are free) plus 6 per vocabulary weight per prediction."""
    encoder = model.mlm.base_model
    weights = sum(p.numel() for p in encoder.parameters())
    weights -= sum(p.numel() for p in encoder.get_input_embeddings().parameters())
    weights -= sum(p.numel() for n, p in encoder.named_parameters() if "position_embeddings"
                   in n or "token_type_embeddings" in n)
    config = model.mlm.config
    vocab = 6 * config.hidden_size * config.vocab_size
    return 6 * weights * seen["tokens"] + vocab * (seen["mlm_targets"] + seen["sbo_targets"])


def pretrain(cfg: PretrainConfig) -> dict:
    """Continue pretraining `cfg.model` on `cfg.text`; returns a summary with the compute."""
    env, device = setup_distributed(cfg.device)
    out = Path(cfg.out)
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
    parts = cfg.grad_accum * env.world
    if cfg.batch_size % parts:
        raise ValueError(f"batch_size {cfg.batch_size} must split evenly into grad_accum "
                         f"{cfg.grad_accum} steps of {env.world} processes")
    if cfg.masking not in ("span", "token"):
        raise ValueError(f"masking must be span or token, got {cfg.masking!r}")
    if cfg.sbo and cfg.masking != "span":
        raise ValueError("the span boundary objective needs span masking: use --no-sbo with "
                         "--masking token")
    torch.manual_seed(cfg.seed)
    show = cfg.progress and env.main
    resume_from = resolve_checkpoint(out / "last") if cfg.resume else None
    if cfg.resume and resume_from is None and env.main:
        log.warning("--resume: no checkpoint in %s/last, starting from scratch", out)
    tokenizer = load_tokenizer(resume_from or cfg.model)
    blocks = build_blocks(tokenizer, cfg.text, cfg.max_seq_length, progress=show)
    model = SpanBertPretrainer(load_mlm_model(str(resume_from or cfg.model)), sbo=cfg.sbo,
                               max_span_positions=cfg.sbo_max_positions).to(device)
    if cfg.max_seq_length > model.mlm.config.max_position_embeddings:
        raise ValueError(f"max_seq_length {cfg.max_seq_length} exceeds the model's "
                         f"{model.mlm.config.max_position_embeddings} positions")
    held, train_blocks = split_held_out(blocks, cfg.held_out, cfg.seed)
    if len(train_blocks) < parts:
        raise ValueError(f"{len(train_blocks)} training blocks cannot fill a step of {parts}")
    sampler = UnigramSampler(unigram_counts(train_blocks, len(tokenizer),
                                            exclude=tokenizer.all_special_ids))
    specials = Specials(tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                        tokenizer.mask_token_id)

    def batches(epoch: int) -> list[list[int]]:
        return [b for b in random_batches(len(train_blocks), cfg.batch_size, cfg.seed, epoch)
                if len(b) >= parts]

    steps_per_epoch = len(batches(0))
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)
    eval_every = max(1, steps_per_epoch // max(1, cfg.evals_per_epoch))
    optimizer = torch.optim.AdamW(optimizer_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = linear_schedule(optimizer, cfg.warmup, total_steps)
    dtype = autocast_dtype(device, cfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    step, epoch, next_batch, history = 0, 0, 0, []
    seen = {"tokens": 0, "mlm_targets": 0, "sbo_targets": 0, "seconds": 0.0}
    if resume_from is not None:
        state = restore_trainer_state(resume_from, cfg, optimizer, scheduler, scaler, env,
                                      device)
        if model.sbo is not None:
            model.sbo.load_state_dict(state["sbo"])
        step, epoch, next_batch = state["step"], state["epoch"], state["next_batch"]
        seen, history = state["seen"], state["history"]
    metrics_log = MetricsLog(out / "metrics.jsonl", env.main, step if resume_from else None)
    ddp_model = data_parallel(model, env, device)
    meta = {"train_args": asdict(cfg), "objective": "span masking + SBO" if cfg.sbo else
            f"{cfg.masking} masking (MLM only)", "blocks": len(train_blocks),
            "held_out_blocks": len(held)}

    def checkpoint(evaluate: bool) -> None:
        if evaluate and held and env.main:
            scores = {"step": step, "epoch": step / steps_per_epoch,
                      **held_out_loss(model, held, cfg, specials, sampler, device, dtype)}
            history.append(scores)
            metrics_log.write(type="eval", **scores)
            bar.write(f"step {step}: held-out " + json.dumps(
                {k: round(v, 4) for k, v in scores.items() if k.endswith("loss")}))
            plot_curves(out / "metrics.jsonl", out / "curves.png")
        rng = gather_rng_states(env, device)
        if env.main:
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict(), "step": step, "epoch": epoch,
                     "next_batch": next_batch, "history": history,
                     "seen": {**seen, "seconds": seen["seconds"] + time.perf_counter() - began},
                     "rng": rng, "sbo": model.sbo.state_dict() if model.sbo is not None else {}}
            save_checkpoint(out / "last", model.mlm, tokenizer, {**meta, "step": step}, state)

    encoder_params = list(model.mlm.base_model.parameters())
    # During head steps one process skips the encoder's backward pass altogether; under DDP,
    # which expects a gradient for every parameter it registered, they are dropped instead.
    frozen = env.world == 1 and step < cfg.head_steps
    for p in encoder_params:
        p.requires_grad_(not frozen)
    bar = tqdm(total=total_steps, initial=step, desc="pretrain", unit="step", disable=not show)
    model.train()
    began = time.perf_counter()
    sums = {"loss": 0.0, "mlm_loss": 0.0, "sbo_loss": 0.0}
    logged, window_t, window_blocks = 0, time.perf_counter(), 0
    epoch_batches, batches_epoch = [], -1
    while step < total_steps:
        if frozen and step >= cfg.head_steps:
            frozen = False
            for p in encoder_params:
                p.requires_grad_(True)
        if batches_epoch != epoch:  # each epoch has its own order, a function of the seed
            epoch_batches, batches_epoch = batches(epoch), epoch
        step_batch = epoch_batches[next_batch]
        masked = {i: mask_block(train_blocks[i], i, cfg.seed, epoch, cfg.masking, specials,
                                sampler, cfg.masking_config) for i in step_batch}
        mlm_n = sum(int((m.labels != IGNORE).sum()) for m in masked.values())
        sbo_n = count_sbo_targets(masked.values(), cfg.sbo_max_positions) if cfg.sbo else 0
        chunks = split_step_batch(step_batch, cfg.grad_accum, env.rank, env.world)
        for k, local in enumerate(chunks):
            batch = {key: v.to(device) for key, v in collate(
                [masked[i] for i in local], specials, cfg.sbo_max_positions).items()}
            sync = ddp_model.no_sync() if env.world > 1 and k < len(chunks) - 1 else None
            with sync or contextlib.nullcontext(), autocast(device, dtype):
                result = ddp_model(batch)
                loss = _loss(result, mlm_n, sbo_n)
                scaler.scale(loss * env.world).backward()
            sums["loss"] += loss.item()
            sums["mlm_loss"] += result["mlm_loss"].item() / max(mlm_n, 1)
            if "sbo_loss" in result:
                sums["sbo_loss"] += result["sbo_loss"].item() / max(sbo_n, 1)
        seen["tokens"] += sum(len(train_blocks[i].ids) + 2 for i in step_batch)
        seen["mlm_targets"] += mlm_n
        seen["sbo_targets"] += sbo_n
        window_blocks += len(step_batch)
        if step < cfg.head_steps:
            for p in encoder_params:  # AdamW skips them: no update, no decay, no moments
                p.grad = None
        optimizer_step(model, optimizer, scheduler, scaler, cfg.max_grad_norm)
        step += 1
        next_batch += 1
        logged += 1
        if next_batch >= len(epoch_batches):
            epoch, next_batch = epoch + 1, 0
        bar.update(1)
        if step % cfg.log_every == 0 or step == total_steps:
            if env.world > 1:  # this process's sums are its share of each step's loss
                totals = torch.tensor(list(sums.values()), dtype=torch.float64, device=device)
                dist.all_reduce(totals)
                sums = dict(zip(sums, totals.tolist(), strict=True))
            now = time.perf_counter()
            record = {"type": "train", "step": step, "epoch": round(step / steps_per_epoch, 4),
                      **{k: v / logged for k, v in sums.items() if cfg.sbo or k != "sbo_loss"},
                      "lr": scheduler.get_last_lr()[0],
                      "blocks_per_s": window_blocks / max(now - window_t, 1e-9)}
            metrics_log.write(**record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                            bps=f"{record['blocks_per_s']:.1f}")
            sums = dict.fromkeys(sums, 0.0)
            logged, window_t, window_blocks = 0, now, 0
        at_eval = step % eval_every == 0 or step == total_steps
        if at_eval or (cfg.save_steps and step % cfg.save_steps == 0):
            paused = time.perf_counter()
            checkpoint(at_eval)
            if env.world > 1:
                dist.barrier()
            window_t += time.perf_counter() - paused
    bar.close()
    wall = seen["seconds"] + time.perf_counter() - began  # over every part of a resumed run
    summary = {"steps": step, "blocks": len(train_blocks), "held_out_blocks": len(held),
               "tokens_seen": seen["tokens"], "wall_seconds": wall, "device": str(device),
               "approx_train_flops": approx_flops(model, seen),
               "held_out": history[-1] if history else None}
    if env.main:
        save_checkpoint(out / "encoder", model.mlm, tokenizer, {**meta, "summary": summary})
        (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
