"""Fine-tuning settings: `spanqa reader train`'s flags, one field each.

Torch-free on purpose (FeatureConfig is imported when asked for),
so that the command line can build its parser without loading torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..runtime.onnx import BACKENDS

if TYPE_CHECKING:
    from .features import FeatureConfig

READER_BACKENDS = (*BACKENDS, "openvino")  # what reads the windows: reader/backends.py


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
        from .features import FeatureConfig

        return FeatureConfig(self.max_seq_length, self.doc_stride, self.max_query_length)
