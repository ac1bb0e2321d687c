"""Continued-pretraining settings: `spanqa pretrain`'s flags, one field each.

Torch-free on purpose (the standard library only, MaskingConfig imported when asked for),
so that the command line can build its parser without loading torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .masking import MaskingConfig


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
        from .masking import MaskingConfig

        return MaskingConfig(self.mask_ratio, self.geometric_p, self.max_span_words)
