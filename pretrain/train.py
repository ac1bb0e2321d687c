"""Continued pretraining with span masking and the span boundary objective.

The same loop as reader fine-tuning (reader/loop.py), running the `Pretraining` job:
step-based and resumable, warm-up and linear decay, accumulation, clipping, mixed precision
on GPUs, data-parallel under torchrun, atomic safetensors checkpoints, metrics.jsonl and a
loss plot. The result, OUT/encoder, is an ordinary masked-LM checkpoint:
`spanqa reader train --model OUT/encoder` puts a fresh span head on it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..reader.batching import random_batches
from ..reader.checkpoint import save_checkpoint
from ..reader.loop import Job, Run, fit, resume_point, start_run
from ..runtime.device import autocast
from ..runtime.hub import load_tokenizer
from .batches import Specials, collate, count_sbo_targets, mask_block
from .config import PretrainConfig
from .corpus import Block, build_blocks, unigram_counts
from .masking import IGNORE, UnigramSampler
from .model import SpanBertPretrainer, load_mlm_model

log = logging.getLogger(__name__)

HELD_OUT_EPOCH = 1_000_003  # masking seed of the held-out blocks: the same at every evaluation


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


def _new_seen() -> dict:
    return {"tokens": 0, "mlm_targets": 0, "sbo_targets": 0, "seconds": 0.0}


@dataclass
class Pretraining(Job):
    """Masked-LM (and SBO) loss on masked blocks; the held-out loss at evaluations; the
    encoder frozen for the first `head_steps`."""

    run: Run
    model: SpanBertPretrainer
    tokenizer: Any
    blocks: list[Block]  # to train on
    held: list[Block]  # to measure the loss on
    specials: Specials
    sampler: UnigramSampler
    meta: dict
    seen: dict = field(default_factory=_new_seen)  # over every part of a resumed run
    name = "pretrain"
    rate = ("blocks_per_s", "bps")
    sum_keys = ("loss", "mlm_loss", "sbo_loss")

    def __post_init__(self) -> None:
        self.encoder_params = list(self.model.mlm.base_model.parameters())
        self.encoder_trains: bool | None = None  # as last set (None: not yet)
        self.masked: dict = {}  # this step's blocks, masked
        self.mlm_n = self.sbo_n = 0  # and their targets

    def batches(self, epoch: int) -> list[list[int]]:
        cfg = self.run.cfg
        return [b for b in random_batches(len(self.blocks), cfg.batch_size, cfg.seed, epoch)
                if len(b) >= self.run.parts]

    def begin_step(self, batch: list[int]) -> None:
        run, cfg = self.run, self.run.cfg
        # During head steps one process skips the encoder's backward pass altogether; under
        # DDP, which expects a gradient for every parameter it registered, they are dropped
        # instead (`before_update`).
        trains = not (run.env.world == 1 and run.step < cfg.head_steps)
        if trains != self.encoder_trains:
            self.encoder_trains = trains
            for p in self.encoder_params:
                p.requires_grad_(trains)
        self.masked = {i: mask_block(self.blocks[i], i, cfg.seed, run.epoch, cfg.masking,
                                     self.specials, self.sampler, cfg.masking_config)
                       for i in batch}
        self.mlm_n = sum(int((m.labels != IGNORE).sum()) for m in self.masked.values())
        self.sbo_n = (count_sbo_targets(self.masked.values(), cfg.sbo_max_positions)
                      if cfg.sbo else 0)
        self.seen["tokens"] += sum(len(self.blocks[i].ids) + 2 for i in batch)
        self.seen["mlm_targets"] += self.mlm_n
        self.seen["sbo_targets"] += self.sbo_n

    def loss(self, model: torch.nn.Module, chunk: list[int], sums: dict) -> torch.Tensor:
        batch = {key: v.to(self.run.device) for key, v in collate(
            [self.masked[i] for i in chunk], self.specials, self.run.cfg.sbo_max_positions
        ).items()}
        result = model(batch)
        loss = _loss(result, self.mlm_n, self.sbo_n)
        sums["loss"] += loss.item()
        sums["mlm_loss"] += result["mlm_loss"].item() / max(self.mlm_n, 1)
        if "sbo_loss" in result:
            sums["sbo_loss"] += result["sbo_loss"].item() / max(self.sbo_n, 1)
        return loss * self.run.env.world  # normalised by the global batch's targets already

    def before_update(self) -> None:
        if self.run.step < self.run.cfg.head_steps:
            for p in self.encoder_params:  # AdamW skips them: no update, no decay, no moments
                p.grad = None

    def train_losses(self, sums: dict, steps: int) -> dict[str, float]:
        return {k: v / steps for k, v in sums.items()  # per step
                if self.run.cfg.sbo or k != "sbo_loss"}

    def evaluate(self) -> dict | None:
        if not self.held:
            return None
        run = self.run
        scores = {"step": run.step, "epoch": run.step / run.steps_per_epoch,
                  **held_out_loss(self.model, self.held, run.cfg, self.specials, self.sampler,
                                  run.device, run.dtype)}
        tqdm.write(f"step {run.step}: held-out " + json.dumps(
            {k: round(v, 4) for k, v in scores.items() if k.endswith("loss")}))
        return scores

    def save(self, state: dict) -> None:
        run = self.run
        state.update(seen={**self.seen,
                           "seconds": self.seen["seconds"] + time.perf_counter() - run.began},
                     sbo=self.model.sbo.state_dict() if self.model.sbo is not None else {})
        save_checkpoint(run.out / "last", self.model.mlm, self.tokenizer,
                        {**self.meta, "step": run.step}, state)

    def restore(self, state: dict) -> None:
        if self.model.sbo is not None:
            self.model.sbo.load_state_dict(state["sbo"])
        self.seen = state["seen"]


def pretrain(cfg: PretrainConfig) -> dict:
    """Continue pretraining `cfg.model` on `cfg.text`; returns a summary with the compute."""
    run = start_run(cfg, log)
    env = run.env
    if cfg.masking not in ("span", "token"):
        raise ValueError(f"masking must be span or token, got {cfg.masking!r}")
    if cfg.sbo and cfg.masking != "span":
        raise ValueError("the span boundary objective needs span masking: use --no-sbo with "
                         "--masking token")
    resume_from = resume_point(run)
    tokenizer = load_tokenizer(resume_from or cfg.model)
    blocks = build_blocks(tokenizer, cfg.text, cfg.max_seq_length, progress=run.show)
    model = SpanBertPretrainer(load_mlm_model(str(resume_from or cfg.model)), sbo=cfg.sbo,
                               max_span_positions=cfg.sbo_max_positions).to(run.device)
    if cfg.max_seq_length > model.mlm.config.max_position_embeddings:
        raise ValueError(f"max_seq_length {cfg.max_seq_length} exceeds the model's "
                         f"{model.mlm.config.max_position_embeddings} positions")
    held, train_blocks = split_held_out(blocks, cfg.held_out, cfg.seed)
    if len(train_blocks) < run.parts:
        raise ValueError(f"{len(train_blocks)} training blocks cannot fill a step of "
                         f"{run.parts}")
    sampler = UnigramSampler(unigram_counts(train_blocks, len(tokenizer),
                                            exclude=tokenizer.all_special_ids))
    specials = Specials(tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                        tokenizer.mask_token_id)
    meta = {"train_args": asdict(cfg), "objective": "span masking + SBO" if cfg.sbo else
            f"{cfg.masking} masking (MLM only)", "blocks": len(train_blocks),
            "held_out_blocks": len(held)}
    job = Pretraining(run, model, tokenizer, train_blocks, held, specials, sampler, meta)
    fit(run, job)
    seen = job.seen
    wall = seen["seconds"] + time.perf_counter() - run.began  # over every part of a run
    summary = {"steps": run.step, "blocks": len(train_blocks), "held_out_blocks": len(held),
               "tokens_seen": seen["tokens"], "wall_seconds": wall, "device": str(run.device),
               "approx_train_flops": approx_flops(model, seen),
               "held_out": run.history[-1] if run.history else None}
    if env.main:
        save_checkpoint(run.out / "encoder", model.mlm, tokenizer, {**meta, "summary": summary})
        (run.out / "pretrain_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
