"""`spanqa pretrain`: continue pretraining an encoder on the company's own text."""

from __future__ import annotations

import argparse
import json

from .config import PretrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = PretrainConfig()
    p = sub.add_parser(
        "pretrain", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="continue pretraining an encoder with span masking and the span boundary "
             "objective (SpanBERT) on an index or documents, before fine-tuning a reader",
        description="Writes OUT/encoder, an encoder for `spanqa reader train --model "
                    "OUT/encoder`, plus OUT/last (resumable), metrics.jsonl and curves.png.")
    p.add_argument("--text", nargs="+", required=True, metavar="DIR_OR_INDEX",
                   help="SpanQA index folders, or files and folders of documents")
    p.add_argument("--model", default=d.model,
                   help="encoder to start from: 'minilm' (offline), a hub id or a directory")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--masking", choices=("span", "token"), default=d.masking,
                   help="span: SpanBERT's whole-word spans; token: BERT's single tokens")
    p.add_argument("--sbo", action=argparse.BooleanOptionalAction, default=None,
                   help="add the span boundary objective to the masked-LM loss (default: "
                        "with span masking, not with token masking)")
    for name in ("max_seq_length", "batch_size", "grad_accum", "max_steps", "seed",
                 "evals_per_epoch", "save_steps", "log_every", "head_steps"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lr", "epochs", "warmup", "weight_decay", "max_grad_norm", "mask_ratio",
                 "held_out"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--precision", default=d.precision,
                   help="auto (bf16 on GPUs that have it, else fp32), fp32, bf16 or fp16")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the GPU if any)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .train import pretrain

    if args.sbo is None:
        args.sbo = args.masking == "span"
    names = {f.name for f in fields(PretrainConfig)}
    config = PretrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    print(json.dumps(pretrain(config), indent=2))
    return 0
