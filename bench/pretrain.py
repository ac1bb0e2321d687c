"""Does SpanBERT-style continued pretraining on the collection help the reader?

    python bench/pretrain.py                    # the full experiment (2.5 h on 2 cores)
    python bench/pretrain.py --train-limit 2000 --dev-limit 500 --pretrain-epochs 1
                                                # a reduced one: say so when you report it
    python bench/pretrain.py --smoke            # minutes: checks the script, measures nothing

Conditions, each fine-tuned exactly as bench/reader.py's epoch phase does (SQuAD v1.1,
1 epoch, max_seq_length 256, doc_stride 64, batch 16, lr 1e-4) with the same seeds:
  none    the offline MiniLM encoder as it ships
  span    continued pretraining with span masking + the span boundary objective (SpanBERT)
  token   the ablation: BERT's token masking, MLM only, the same steps, batch and lr
Pretraining runs 3 epochs (102 steps of 32 blocks of 256 tokens), the first epoch training
only the new heads: the offline MiniLM ships without an MLM head, and random heads'
gradients otherwise disturb the encoder that fine-tuning starts from.
The pretraining text is the shared SQuAD collection's paragraphs (train and dev v1.1,
text only, one document per article), as in the open-domain setting where the reader is
later asked about the indexed documents: the dev paragraphs are part of that collection,
their questions never are. Each seed pretrains and fine-tunes (pretraining variance counts).
Pretraining steps, tokens, seconds and approximate FLOPs are summed over the seeds.

Writes bench/results/pretrain.json (per condition: pretraining compute and held-out
losses; per seed: the fine-tuned reader's dev EM/F1; means and differences against
`none`) and prints a table.
Runs are cached in --work and reused when their results exist, so a long experiment can
be stopped and continued.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spanqa.pretrain.config import PretrainConfig  # noqa: E402
from spanqa.pretrain.train import pretrain  # noqa: E402
from spanqa.reader.config import TrainConfig  # noqa: E402
from spanqa.reader.train import train  # noqa: E402

SQUAD = Path(os.environ.get("SPANQA_SQUAD_DIR", REPO.parent / "shared" / "squad"))
CONDITIONS = {"none": None, "span": ("span", True), "token": ("token", False)}


def pretrain_condition(args, name: str, seed: int) -> dict:
    """Pretrain once per condition and seed; reuse a finished run."""
    out = Path(args.work) / f"pretrain-{name}-seed{seed}"
    summary_file = out / "pretrain_summary.json"
    if summary_file.is_file() and (out / "encoder" / "model.safetensors").is_file():
        return json.loads(summary_file.read_text())
    masking, sbo = CONDITIONS[name]
    cfg = PretrainConfig(
        text=[str(SQUAD / "train-v1.1.json"), str(SQUAD / "dev-v1.1.json")], out=str(out),
        model=args.model, masking=masking, sbo=sbo, max_seq_length=args.pretrain_seq_length,
        batch_size=args.pretrain_batch_size, lr=args.pretrain_lr, epochs=args.pretrain_epochs,
        max_steps=args.pretrain_steps, head_steps=args.pretrain_head_steps, seed=seed,
        progress=not args.quiet, resume=True)
    return pretrain(cfg)


def finetune(args, name: str, seed: int) -> dict:
    pretrained = Path(args.work) / f"pretrain-{name}-seed{seed}" / "encoder"
    encoder = args.model if name == "none" else str(pretrained)
    out = Path(args.work) / f"finetune-{name}-seed{seed}"
    summary_file = out / "train_summary.json"
    if not summary_file.is_file():
        cfg = TrainConfig(
            train=str(SQUAD / "train-v1.1.json"), dev=str(SQUAD / "dev-v1.1.json"),
            out=str(out), model=encoder, max_seq_length=256, doc_stride=64, batch_size=16,
            lr=1e-4, epochs=1, seed=seed, evals_per_epoch=args.evals_per_epoch,
            max_train_examples=args.train_limit, max_dev_examples=args.dev_limit,
            max_steps=args.finetune_steps, progress=not args.quiet, resume=True)
        train(cfg)
    summary = json.loads(summary_file.read_text())
    best = summary["best"]
    return {"seed": seed, "exact_match": best.get("exact_match"), "f1": best.get("f1"),
            "best_step": best.get("step"), "steps": summary["steps"],
            "train_seconds": summary["train_seconds"]}


def table(results: dict) -> str:
    rows = [("condition", "pretrain steps", "pretrain s", "~PFLOP", "held-out loss per seed",
             "EM (mean)", "F1 (mean)", "F1 per seed", "dF1 vs none")]
    for name, r in results["conditions"].items():
        runs = r["pretrain"]
        held = [(p.get("held_out") or {}).get("loss") for p in runs]
        rows.append((
            name, str(sum(p["steps"] for p in runs)) if runs else "-",
            f"{sum(p['wall_seconds'] for p in runs):.0f}" if runs else "-",
            f"{sum(p['approx_train_flops'] for p in runs) / 1e15:.2f}" if runs else "-",
            " / ".join(f"{h:.3f}" for h in held if h is not None) or "-",
            f"{r['mean_em']:.2f}", f"{r['mean_f1']:.2f}",
            " / ".join(f"{s['f1']:.2f}" for s in r["seeds"]),
            f"{r['delta_f1_vs_none']:+.2f}" if "delta_f1_vs_none" in r else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                     for row in rows)


def summarise(results: dict) -> None:
    """Means over the seeds finished so far, and differences against `none`."""
    done = {n: e for n, e in results["conditions"].items() if e["seeds"]}
    for entry in done.values():
        entry["mean_em"] = statistics.mean(s["exact_match"] for s in entry["seeds"])
        entry["mean_f1"] = statistics.mean(s["f1"] for s in entry["seeds"])
    base = done.get("none")
    for entry in done.values():
        if base and len(entry["seeds"]) == len(base["seeds"]):
            entry["delta_f1_vs_none"] = entry["mean_f1"] - base["mean_f1"]
            entry["delta_em_vs_none"] = entry["mean_em"] - base["mean_em"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conditions", default="none,span,token")
    parser.add_argument("--seeds", default="42,43")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--pretrain-epochs", type=float, default=3.0)
    parser.add_argument("--pretrain-steps", type=int, default=0, help="0: all epochs")
    parser.add_argument("--pretrain-head-steps", type=int, default=34,
                        help="first steps that train only the new heads, encoder frozen "
                        "(34: one epoch of the shared collection at batch 32)")
    parser.add_argument("--pretrain-batch-size", type=int, default=32)
    parser.add_argument("--pretrain-lr", type=float, default=1e-4)
    parser.add_argument("--pretrain-seq-length", type=int, default=256)
    parser.add_argument("--train-limit", type=int, default=0, help="first N training questions")
    parser.add_argument("--dev-limit", type=int, default=0, help="first N dev questions")
    parser.add_argument("--finetune-steps", type=int, default=0, help="0: one epoch")
    parser.add_argument("--evals-per-epoch", type=int, default=1,
                        help="dev evaluations while fine-tuning; 1: score the final model")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps of everything on small slices: checks the script")
    parser.add_argument("--work", default=str(REPO / "data" / "bench" / "pretrain"))
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.pretrain_steps, args.finetune_steps = 2, 2
        args.train_limit, args.dev_limit, args.evals_per_epoch = 64, 32, 1
        args.work = str(Path(args.work).with_name("pretrain-smoke"))
    conditions = args.conditions.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    began = time.perf_counter()
    settings = {k: v for k, v in vars(args).items() if k != "quiet"}
    for key in ("work", "results"):  # paths as the repository sees them, not this machine
        with contextlib.suppress(ValueError):
            settings[key] = str(Path(settings[key]).resolve().relative_to(REPO))
    results: dict = {"settings": settings,
                     "conditions": {name: {"pretrain": [], "seeds": []} for name in conditions}}
    # A smoke run measures nothing: its file is ignored by git.
    out = Path(args.results) / ("pretrain-smoke.json" if args.smoke else "pretrain.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Seed by seed, so a stopped experiment still compares every condition on one seed.
    for seed in seeds:  # pretraining and fine-tuning share the seed
        for name in conditions:
            entry = results["conditions"][name]
            if CONDITIONS[name]:
                entry["pretrain"].append(pretrain_condition(args, name, seed))
            entry["seeds"].append(finetune(args, name, seed))
            summarise(results)
            results["complete"] = all(len(e["seeds"]) == len(seeds)
                                      for e in results["conditions"].values())
            results["wall_seconds"] = time.perf_counter() - began
            out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
