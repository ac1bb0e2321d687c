"""The demo reader's F1 per minute of training: which short recipe `spanqa demo` uses.

    python bench/demo_reader.py --runs demo-old:110,ref-2e-4:150     # PRESET:STEPS, ...
    python bench/demo_reader.py --runs ref-2e-4:100,ref-2e-4:200 --full-dev
    python bench/demo_reader.py --speed demo-old,ref-2e-4-top3 --rounds 3   # quiet machine

Quality and speed are measured apart, because quality does not depend on how busy the
machine is and speed does. A run (`--runs`) fine-tunes the offline MiniLM on SQuAD v1.1
train for STEPS optimizer steps of a preset (its schedule planned for exactly those steps,
as the demo's is) and scores it on the first 300 dev-v1.1 questions with their paragraph
(the demo's own evaluation), and with `--full-dev` on all 1,491; its folder in
data/bench/demo-reader/ is reused when complete, so the script can be stopped and
continued. The speed phase (`--speed`) trains each preset for `--speed-steps` steps in
turn, `--rounds` times (interleaved), and keeps the median windows/s; each run's minutes
are then its windows at its preset's speed. Speeds hold for one machine only: the JSON
says which CPU, and which instruction-set caps were set in the environment (an AVX2-only
CPU is approximated with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2). Prints a table, writes bench/results/demo-reader.json and a
plot of dev F1 against training minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import describe, label  # noqa: E402
from spanqa.reader.config import TrainConfig  # noqa: E402
from spanqa.reader.train import train  # noqa: E402

SQUAD = Path(os.environ.get("SPANQA_SQUAD_DIR", REPO.parent / "shared" / "squad"))
RUNS = REPO / "data" / "bench" / "demo-reader"

# What the demo used before (lr 2e-4 with warm-up, decay and clipping), and variations:
# the reference recipe's optimiser (no warm-up, no weight decay, no clipping) at several
# learning rates, smaller batches, shorter windows, and training only the top layers.
BASE = dict(model="minilm", max_seq_length=256, doc_stride=64, batch_size=16, lr=2e-4,
            warmup=0.1, weight_decay=0.01, max_grad_norm=1.0, epochs=1, seed=42)
REF = dict(warmup=0.0, weight_decay=0.0, max_grad_norm=0.0)
PRESETS: dict[str, dict] = {
    "demo-old": {},
    **{f"ref-{lr}": {**REF, "lr": float(lr)} for lr in ("1e-4", "2e-4", "3e-4", "5e-4")},
    "ref-2e-4-warm": {**REF, "lr": 2e-4, "warmup": 0.1},
    "ref-2e-4-bs8": {**REF, "lr": 2e-4, "batch_size": 8},
    "ref-2e-4-nodrop": {**REF, "lr": 2e-4, "dropout": 0.0},
    "ref-3e-4-nodrop": {**REF, "lr": 3e-4, "dropout": 0.0},
    "ref-2e-4-bs8-nodrop": {**REF, "lr": 2e-4, "batch_size": 8, "dropout": 0.0},
    "ref-1e-4-bs8-nodrop": {**REF, "lr": 1e-4, "batch_size": 8, "dropout": 0.0},
    "ref-3e-4-bs8-nodrop": {**REF, "lr": 3e-4, "batch_size": 8, "dropout": 0.0},
    "ref-1e-4-bs8": {**REF, "lr": 1e-4, "batch_size": 8},
    "ref-3e-4-bs8": {**REF, "lr": 3e-4, "batch_size": 8},
    "ref-2e-4-bs4-nodrop": {**REF, "lr": 2e-4, "batch_size": 4, "dropout": 0.0},
    "ref-2e-4-bs8-nodrop-seq192": {**REF, "lr": 2e-4, "batch_size": 8, "dropout": 0.0,
                                   "max_seq_length": 192},
    "ref-2e-4-bs32": {**REF, "lr": 2e-4, "batch_size": 32},
    "ref-2e-4-seq192": {**REF, "lr": 2e-4, "max_seq_length": 192},
    "ref-2e-4-seq128": {**REF, "lr": 2e-4, "max_seq_length": 128, "doc_stride": 48},
    **{f"ref-{lr}-top{n}": {**REF, "lr": float(lr), "train_layers": n}
       for lr in ("2e-4", "5e-4") for n in (2, 3, 4)},
}


def run_one(preset: str, steps: int, full_dev: bool) -> dict:
    out = RUNS / f"{preset}-{steps}"
    summary_file = out / "train_summary.json"
    if not summary_file.is_file():
        cfg = TrainConfig(train=str(SQUAD / "train-v1.1.json"), dev=str(SQUAD / "dev-v1.1.json"),
                          out=str(out), max_steps=steps, evals_per_epoch=1,
                          max_dev_examples=300, log_every=10, **{**BASE, **PRESETS[preset]})
        train(cfg)
    summary = json.loads(summary_file.read_text())
    record = {"preset": preset, "steps": steps, "settings": {**BASE, **PRESETS[preset]},
              "windows": steps * {**BASE, **PRESETS[preset]}["batch_size"],
              # this run's own clock, however busy the machine was: see the speed phase
              "train_seconds": round(summary["train_seconds"], 1),
              "dev300_em": round(summary["best"]["exact_match"], 2),
              "dev300_f1": round(summary["best"]["f1"], 2)}
    if full_dev:
        record.update(full_dev_scores(out))
    return record


def full_dev_scores(run: Path) -> dict:
    """EM/F1 on all 1,491 dev-v1.1 questions (cached beside the run)."""
    cached = run / "full_dev.json"
    if not cached.is_file():
        from spanqa.reader.evaluation import evaluate
        from spanqa.reader.reader import Reader
        from spanqa.reader.squad import load_examples

        reader = Reader.from_pretrained(run, backend="torch", precision="fp32")
        examples, report = load_examples(str(SQUAD / "dev-v1.1.json"), split="validation")
        result = evaluate(reader.model, reader.tokenizer, examples, reader.config,
                          version=report.version)
        cached.write_text(json.dumps(result.metrics, indent=2) + "\n")
    metrics = json.loads(cached.read_text())
    return {"dev_em": round(metrics["exact_match"], 2), "dev_f1": round(metrics["f1"], 2)}


def measure_speed(presets: list[str], steps: int, rounds: int) -> dict[str, dict]:
    """Median training windows/s of each preset, the presets taking turns each round (the
    same batches for all: the order is a function of the seed)."""
    seen: dict[str, list[float]] = {p: [] for p in presets}
    for _ in range(rounds):
        for preset in presets:
            with tempfile.TemporaryDirectory() as out:
                summary = train(TrainConfig(
                    train=str(SQUAD / "train-v1.1.json"), out=out, max_steps=steps,
                    progress=False, **{**BASE, **PRESETS[preset]}))
            seen[preset].append(summary["features_per_second"])
            print(f"speed {preset}: {seen[preset][-1]:.2f} windows/s", flush=True)
    return {p: {"windows_per_second": round(statistics.median(v), 2),
                "rounds": [round(x, 2) for x in v], "steps": steps} for p, v in seen.items()}


def minutes(record: dict, speeds: dict) -> float | None:
    speed = speeds.get(record["preset"], {}).get("windows_per_second")
    return round(record["windows"] / speed / 60, 2) if speed else None


def plot(records: list[dict], speeds: dict, png: Path, caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for preset in dict.fromkeys(r["preset"] for r in records):
        points = sorted((minutes(r, speeds), r["dev300_f1"]) for r in records
                        if r["preset"] == preset and minutes(r, speeds) is not None)
        if points:
            ax.plot(*zip(*points, strict=True), "o-", label=preset)
    ax.axhline(45, color="grey", linestyle=":", label="target F1 45")
    ax.set_xlabel("training minutes at the speed phase's windows/s (evaluation excluded)")
    ax.set_ylabel("dev-v1.1 F1 (first 300 questions)")
    ax.set_title(caption, fontsize=7)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="",
                        help=f"PRESET:STEPS,... with PRESET one of {', '.join(PRESETS)}")
    parser.add_argument("--full-dev", action="store_true",
                        help="also score each run on all 1,491 dev-v1.1 questions")
    parser.add_argument("--speed", default="", help="PRESET,... to time side by side")
    parser.add_argument("--speed-steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default="demo-reader",
                        help="bench/results/NAME.json and NAME.png (runs already there are kept)")
    args = parser.parse_args()
    wanted = [(p, int(s)) for p, s in (item.split(":") for item in args.runs.split(",") if item)]
    timed = [p for p in args.speed.split(",") if p]
    unknown = sorted({p for p, _ in wanted} - set(PRESETS) | set(timed) - set(PRESETS))
    if unknown:
        parser.error(f"unknown presets {unknown}; known: {', '.join(PRESETS)}")

    results_file = REPO / "bench" / "results" / f"{args.output}.json"
    previous = json.loads(results_file.read_text()) if results_file.is_file() else {}
    machine = describe()
    kept = {f"{r['preset']}:{r['steps']}": r for r in previous.get("runs", [])}
    for preset, steps in wanted:
        kept[f"{preset}:{steps}"] = {**run_one(preset, steps, args.full_dev), "machine": machine}
    records = sorted(kept.values(), key=lambda r: (r["preset"], r["steps"]))
    speed = previous.get("speed", {})
    if timed:
        speed = {"machine": machine, "presets": {
            **speed.get("presets", {}), **measure_speed(timed, args.speed_steps, args.rounds)}}
    speeds = speed.get("presets", {})

    caption = label(speed.get("machine", machine))
    print(f"\nDemo reader recipes; speeds on {caption}\n")
    print(f"{'preset':<18} {'steps':>5} {'windows':>7} {'win/s':>6} {'minutes':>7} "
          f"{'F1@300':>7} {'EM@300':>7} {'dev F1':>7}")
    for r in records:
        speed_of = speeds.get(r["preset"], {}).get("windows_per_second", "-")
        print(f"{r['preset']:<18} {r['steps']:>5} {r['windows']:>7} {speed_of:>6} "
              f"{minutes(r, speeds) or '-':>7} {r['dev300_f1']:>7} {r['dev300_em']:>7} "
              f"{r.get('dev_f1', '-'):>7}")
    results_file.write_text(json.dumps({"runs": records, "speed": speed}, indent=2) + "\n")
    plot(records, speeds, results_file.with_suffix(".png"), f"speeds on {caption}")
    print(f"\nwrote {results_file} and {results_file.with_suffix('.png')}")


if __name__ == "__main__":
    main()
