"""Reader benchmark: quality on SQuAD dev and throughput against the reference pipelines.

    python bench/reader.py                      # SQuAD v1.1, all phases
    python bench/reader.py --version 2.0        # SQuAD v2.0
    python bench/reader.py --phases speed       # only the side-by-side throughput

Phases:
  speed   training and evaluation throughput of three input pipelines on the same model,
          interleaved over several rounds (median): `padded` (run_qa.py: every window
          padded to max_seq_length, random batches), `random` (run_qa_no_trainer.py:
          dynamic padding, random batches) and `length` (SpanQA: length-grouped batches,
          dynamic padding; evaluation sorted by length).
  epoch   the issue's setting: 1 epoch, max_seq_length 256, doc_stride 64, batch 16,
          lr 1e-4, seed 42; EM/F1 on dev, features/s, wall times.
  epoch_ref  the epoch phase with the reference recipe's optimizer defaults (no warm-up,
          no weight decay, no clipping), so the quality comparison differs only in the
          input pipeline.
  budget  as many epochs as fit into the reference pipeline's wall time for one epoch:
          the speed phase's side-by-side training ratio, in epochs.
  inference  the epoch phase's reader (else the untrained model) evaluated by each
          backend: windows/s on the same dev sample, interleaved (median), for the
          reference (PyTorch, padded to max_seq_length, unsorted; at run_qa.py's default
          eval batch of 8 and at 64, ratios against the faster) and SpanQA's pipeline at
          its default batch sizes run by PyTorch (fp32, bf16), ONNX Runtime (fp32, int8)
          and OpenVINO (fp32, bf16); then EM/F1 on the whole dev set per backend, to show
          what int8 and bf16 cost.
Writes bench/results/reader-v{version}.json (merged across phases) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench.machine import describe, label  # noqa: E402
from spanqa.reader.backends import resolve_backend  # noqa: E402
from spanqa.reader.config import TrainConfig  # noqa: E402
from spanqa.reader.evaluation import eval_features, evaluate  # noqa: E402
from spanqa.reader.features import FeatureConfig  # noqa: E402
from spanqa.reader.inference import predict_logits  # noqa: E402
from spanqa.reader.models import load_qa_model  # noqa: E402
from spanqa.reader.onnx_span import OnnxSpanModel  # noqa: E402
from spanqa.reader.openvino_span import OpenVinoSpanModel  # noqa: E402
from spanqa.reader.reader import Reader  # noqa: E402
from spanqa.reader.squad import load_squad  # noqa: E402
from spanqa.reader.train import train  # noqa: E402
from spanqa.runtime.device import cpu_has_bf16, inference_dtype  # noqa: E402
from spanqa.runtime.hub import load_tokenizer  # noqa: E402

SQUAD = Path(os.environ.get("SPANQA_SQUAD_DIR", REPO.parent / "shared" / "squad"))
PIPELINES = ("padded", "random", "length")
REFERENCE_BATCHES = {"reference (torch, padded, batch 8)": 8,  # run_qa.py's default
                     "reference (torch, padded, batch 64)": 64}
# The reference read in bf16 too: not run_qa.py's default, but the same-precision ratio
# shows what SpanQA's pipeline adds beyond the CPU's bf16 units.
REFERENCE_BF16 = "reference in bf16 (torch, padded, batch 8)"
PADDED = {**REFERENCE_BATCHES, REFERENCE_BF16: 8}
INFERENCE = (*PADDED, "torch", "torch bf16", "onnx", "onnx-int8", "openvino", "openvino bf16")
REFERENCE_EVAL_BATCH = 8  # run_qa.py's per_device_eval_batch_size


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def base_config(args, out: Path, **overrides) -> TrainConfig:
    settings = dict(
        train=str(SQUAD / f"train-v{args.version}.json"),
        dev=str(SQUAD / f"dev-v{args.version}.json"),
        out=str(out), model=args.model, max_seq_length=256, doc_stride=64,
        batch_size=16, lr=1e-4, epochs=1, seed=42, evals_per_epoch=args.evals_per_epoch,
        progress=not args.quiet,
    )
    return TrainConfig(**{**settings, **overrides})


def dev_sample(args, tokenizer, fcfg: FeatureConfig, size: int):
    """A seeded random sample of dev windows, so its length mix is the dev set's."""
    dev, _ = load_squad(SQUAD / f"dev-v{args.version}.json")
    feats = eval_features(tokenizer, dev, fcfg)
    pick = torch.randperm(len(feats), generator=torch.Generator().manual_seed(0))
    return feats.subset(pick[:size].tolist())


def phase_speed(args, results: dict) -> None:
    """Median training and evaluation features/s of the three pipelines, interleaved."""
    work = Path(args.work)
    train_fps = {p: [] for p in PIPELINES}
    eval_fps = {p: [] for p in ("padded", "length")}
    fcfg = FeatureConfig(256, 64, 64)
    tokenizer = load_tokenizer(args.model)
    model = load_qa_model(args.model)
    dev_feats = dev_sample(args, tokenizer, fcfg, args.eval_features)
    for r in range(args.rounds):
        for pipeline in PIPELINES:
            # A seed per round: each round times different batches (lengths vary).
            cfg = base_config(args, work / f"speed-{pipeline}", batching=pipeline,
                              max_steps=args.speed_steps, dev=None, evals_per_epoch=1,
                              seed=42 + r)
            cfg.progress = False
            summary = train(cfg)
            train_fps[pipeline].append(summary["features_per_second"])
            print(f"round {r}: train {pipeline:7s} {summary['features_per_second']:.2f} feat/s",
                  flush=True)
        for pipeline, kw in (("padded", {"pad_to": 256, "sort_by_length": False,
                                         "batch_size": REFERENCE_EVAL_BATCH}),
                             ("length", {})):
            began = time.perf_counter()
            predict_logits(model, dev_feats, pad_id=tokenizer.pad_token_id, **kw)
            fps = len(dev_feats) / (time.perf_counter() - began)
            eval_fps[pipeline].append(fps)
            print(f"round {r}: eval  {pipeline:7s} {fps:.2f} feat/s", flush=True)
    med_t = {p: statistics.median(v) for p, v in train_fps.items()}
    med_e = {p: statistics.median(v) for p, v in eval_fps.items()}
    results["speed"] = {
        "rounds": args.rounds, "train_steps_per_round": args.speed_steps,
        "eval_features": len(dev_feats),
        "train_features_per_s": {p: {"median": med_t[p], "runs": train_fps[p]} for p in med_t},
        "eval_features_per_s": {p: {"median": med_e[p], "runs": eval_fps[p]} for p in med_e},
        "train_ratio_vs_padded": med_t["length"] / med_t["padded"],
        "train_ratio_vs_dynamic": med_t["length"] / med_t["random"],
        "eval_ratio_vs_padded": med_e["length"] / med_e["padded"],
    }


def phase_inference(args, results: dict) -> None:
    """Evaluation windows/s by backend, side by side; then EM/F1 on all of dev by backend."""
    run = args.inference_reader or results.get("epoch", {}).get("run_dir")
    source = str(Path(run) / "best") if run and (Path(run) / "best").is_dir() else args.model
    torch_reader = Reader.from_pretrained(source, backend="torch", precision="fp32")
    tokenizer, fcfg = torch_reader.tokenizer, torch_reader.config
    bf16, cpu = torch.bfloat16, torch.device("cpu")
    bf16_model = Reader(torch_reader.model, tokenizer, backend="torch", precision="bf16").runner
    model = torch_reader.model
    build = {**dict.fromkeys(REFERENCE_BATCHES, lambda: (model, None)),
             REFERENCE_BF16: lambda: (bf16_model, bf16),
             "torch": lambda: (model, None),
             "torch bf16": lambda: (bf16_model, bf16),
             "onnx": lambda: (OnnxSpanModel(model, tokenizer, quantize=False), None),
             "onnx-int8": lambda: (OnnxSpanModel(model, tokenizer, quantize=True), None),
             "openvino": lambda: (OpenVinoSpanModel(model, tokenizer, bf16=False), None),
             "openvino bf16": lambda: (OpenVinoSpanModel(model, tokenizer, bf16=True), bf16)}
    names = [n for n in INFERENCE if not args.inference_backends
             or n in REFERENCE_BATCHES or n in args.inference_backends.split(",")]
    runners = {name: build[name]() for name in names}
    feats = dev_sample(args, tokenizer, fcfg, args.eval_features)
    fps: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names:
            kw = {"pad_to": fcfg.max_seq_length, "sort_by_length": False,
                  "batch_size": PADDED[name]} if name in PADDED else {}
            model, dtype = runners[name]
            began = time.perf_counter()
            predict_logits(model, feats, pad_id=tokenizer.pad_token_id, dtype=dtype, **kw)
            fps[name].append(len(feats) / (time.perf_counter() - began))
            print(f"round {r}: eval {name:36s} {fps[name][-1]:.2f} windows/s", flush=True)
    median = {name: statistics.median(v) for name, v in fps.items()}
    reference = max(median[name] for name in REFERENCE_BATCHES)
    ours = [name for name in names if name not in PADDED]
    dev, _ = load_squad(SQUAD / f"dev-v{args.version}.json")
    quality = {}
    for name in ours:
        model, dtype = runners[name]
        result = evaluate(model, tokenizer, dev, fcfg, version=args.version, dtype=dtype,
                          threshold=torch_reader.null_threshold,
                          tune_threshold=torch_reader.null_threshold is None)
        quality[name] = result.summary()
        print(f"dev by {name}: {result.summary()}", flush=True)
    results["inference"] = {
        "model": source, "eval_windows": len(feats), "rounds": args.rounds,
        "machine": describe(),
        "windows_per_s": {n: {"median": median[n], "runs": fps[n]} for n in names},
        "ratio_vs_reference": {n: median[n] / reference for n in ours},
        "bf16_ratio_vs_reference_in_bf16": (median["torch bf16"] / median[REFERENCE_BF16]
                                            if {"torch bf16", REFERENCE_BF16} <= set(names)
                                            else None),
        "default_backend": resolve_backend("auto", cpu, inference_dtype(cpu)),
        "cpu_bf16_units": cpu_has_bf16(),
        "dev": quality,
    }


def _train_phase(args, name: str, cfg: TrainConfig, results: dict) -> None:
    began = time.perf_counter()
    summary = train(cfg)
    best = summary["best"]
    results[name] = {
        "config": {k: getattr(cfg, k) for k in ("epochs", "lr", "batch_size", "max_seq_length",
                                                "doc_stride", "seed", "batching", "warmup",
                                                "weight_decay", "max_grad_norm",
                                                "max_train_seconds")},
        "train_features": summary["train_features"], "steps": summary["steps"],
        "planned_steps": summary["planned_steps"],
        "train_seconds": summary["train_seconds"], "eval_seconds": summary["eval_seconds"],
        "wall_seconds": time.perf_counter() - began,
        "train_features_per_s": summary["features_per_second"],
        "best": best, "run_dir": cfg.out,
    }


def phase_epoch(args, results: dict) -> None:
    cfg = base_config(args, Path(args.work) / f"epoch-v{args.version}")
    _train_phase(args, "epoch", cfg, results)


# `run_qa_no_trainer.py`'s defaults: no warm-up, no weight decay, no gradient clipping.
REFERENCE_OPTIM = dict(warmup=0.0, weight_decay=0.0, max_grad_norm=0.0)


def phase_epoch_ref(args, results: dict) -> None:
    """The 1-epoch run again with the reference recipe's optimizer settings, so the quality
    comparison with it differs only in the input pipeline."""
    cfg = base_config(args, Path(args.work) / f"epoch-refoptim-v{args.version}",
                      **REFERENCE_OPTIM)
    _train_phase(args, "epoch_ref", cfg, results)


def phase_budget(args, results: dict) -> None:
    """The reference pipeline's wall time for one epoch, spent on SpanQA's faster batches.

    The budget is counted in epochs, not seconds: one epoch times the training speed ratio
    that the speed phase measured side by side. A budget in seconds would compare runs made
    at different times on a machine whose speed drifts by 2x over a day.
    """
    speed = results.get("speed")
    if not speed:
        raise SystemExit("the budget phase needs the speed phase's results")
    ratio = speed["train_ratio_vs_padded"]
    epochs = args.budget_epochs or round(ratio, 2)
    optim = REFERENCE_OPTIM if args.budget_optim == "reference" else {}
    cfg = base_config(args, Path(args.work) / f"budget-v{args.version}", epochs=epochs,
                      lr=args.budget_lr, **optim)
    if "budget" in results:  # keep earlier tries (other learning rates) beside the new one
        results.setdefault("budget_earlier", []).append(results.pop("budget"))
    _train_phase(args, "budget", cfg, results)
    results["budget"]["speed_ratio"] = ratio
    results["budget"]["optim"] = args.budget_optim


def table(results: dict) -> str:
    rows = []
    if "speed" in results:
        s = results["speed"]
        for p in PIPELINES:
            rows.append((f"train features/s, {p}", f"{s['train_features_per_s'][p]['median']:.2f}"))
        rows.append(("train ratio vs padded (run_qa.py)", f"{s['train_ratio_vs_padded']:.2f}x"))
        rows.append(("train ratio vs dynamic padding", f"{s['train_ratio_vs_dynamic']:.2f}x"))
        for p in ("padded", "length"):
            rows.append((f"eval features/s, {p}", f"{s['eval_features_per_s'][p]['median']:.2f}"))
        rows.append(("eval ratio vs padded", f"{s['eval_ratio_vs_padded']:.2f}x"))
    for name in ("epoch", "epoch_ref", "budget"):
        if name in results:
            r, b = results[name], results[name]["best"]
            em = b.get("exact_match", b.get("exact", float("nan")))
            f1 = b.get("f1", float("nan"))
            planned = r.get("planned_steps", r["steps"])
            rows.append((f"{name}: epochs / steps (planned)",
                         f"{r['config']['epochs']} / {r['steps']} ({planned})"))
            rows.append((f"{name}: best dev EM / F1", f"{em:.2f} / {f1:.2f}"))
            if "best_f1" in b:
                rows.append((f"{name}: best_f1 / threshold",
                             f"{b['best_f1']:.2f} / {b.get('threshold')}"))
                rows.append((f"{name}: HasAns F1 / NoAns F1",
                             f"{b.get('HasAns_f1', float('nan')):.2f} / "
                             f"{b.get('NoAns_f1', float('nan')):.2f}"))
            rows.append((f"{name}: train features/s", f"{r['train_features_per_s']:.2f}"))
            rows.append((f"{name}: eval features/s", f"{b.get('features_per_second', 0):.2f}"))
            rows.append((f"{name}: train / eval / wall s",
                         f"{r['train_seconds']:.0f} / {r['eval_seconds']:.0f} / "
                         f"{r['wall_seconds']:.0f}"))
    if "inference" in results:
        inf = results["inference"]
        for name in (n for n in INFERENCE if n in inf["windows_per_s"]):
            ratio = inf["ratio_vs_reference"].get(name)
            rows.append((f"eval windows/s, {name}",
                         f"{inf['windows_per_s'][name]['median']:.2f}"
                         + (f" ({ratio:.2f}x)" if ratio else "")))
        if inf.get("bf16_ratio_vs_reference_in_bf16"):
            rows.append(("torch bf16 vs the reference in bf16",
                         f"{inf['bf16_ratio_vs_reference_in_bf16']:.2f}x"))
        rows.append(("default backend here", f"{inf['default_backend']} "
                     f"(bf16 units: {inf['cpu_bf16_units']})"))
        if "machine" in inf:
            rows.append(("measured on", label(inf["machine"])))
        for name, q in inf["dev"].items():
            em, f1 = q.get("exact_match", q.get("exact")), q["f1"]
            rows.append((f"dev EM / F1 read by {name}", f"{em:.2f} / {f1:.2f}"))
    rows.append(("peak RSS (MB)", f"{results.get('peak_rss_mb', 0):.0f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", choices=("1.1", "2.0"), default="1.1")
    parser.add_argument("--phases", default="speed,epoch,epoch_ref,budget,inference")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--speed-steps", type=int, default=30)
    parser.add_argument("--eval-features", type=int, default=512)
    parser.add_argument("--inference-reader", default="",
                        help="training run the inference phase reads with (default: the "
                             "epoch phase's)")
    parser.add_argument("--inference-backends", default="",
                        help=f"the inference phase's backends besides the reference, of "
                        f"{', '.join(n for n in INFERENCE if n not in REFERENCE_BATCHES)} "
                        "(default: all; on a CPU capped at AVX2, leave out the bf16 ones)")
    parser.add_argument("--output", default="",
                        help="results file name (default: reader-v{version}.json)")
    parser.add_argument("--evals-per-epoch", type=int, default=4)
    parser.add_argument("--budget-lr", type=float, default=1.5e-4)
    parser.add_argument("--budget-epochs", type=float, default=0,
                        help="epochs to train (default: the side-by-side training speed "
                        "ratio to the padded pipeline, i.e. its wall time for one epoch)")
    parser.add_argument("--budget-optim", choices=("reference", "spanqa"), default="reference",
                        help="the budget run's warm-up, weight decay and clipping: the "
                        "reference recipe's (none) or SpanQA's training defaults")
    parser.add_argument("--work", default=str(REPO / "data" / "bench"))
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    out = Path(args.results) / (args.output or f"reader-v{args.version}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    results["version"] = args.version
    for phase in args.phases.split(","):
        {"speed": phase_speed, "epoch": phase_epoch, "epoch_ref": phase_epoch_ref,
         "budget": phase_budget,
         "inference": phase_inference}[phase](args, results)
        results["peak_rss_mb"] = max(results.get("peak_rss_mb", 0), peak_rss_mb())
        out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
