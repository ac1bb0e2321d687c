"""Loss and dev-F1 curves from metrics.jsonl, as a PNG a person can glance at."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_curves(metrics_file: str | Path, png: str | Path) -> Path | None:
    """Training loss against steps, with dev F1 (or, for pretraining, the held-out loss) on a
    second axis; None if nothing to plot."""
    records = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line]
    train = [r for r in records if r.get("type") == "train"]
    evals = [r for r in records if r.get("type") == "eval"]
    if not train and not evals:
        return None
    fig, loss_ax = plt.subplots(figsize=(7, 4), dpi=110)
    loss_ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue")
    loss_ax.set_xlabel("optimizer step")
    loss_ax.set_ylabel("training loss", color="tab:blue")
    if evals:
        f1_ax = loss_ax.twinx()
        key = next(k for k in ("best_f1", "f1", "loss") if k in evals[0])
        f1_ax.plot([r["step"] for r in evals], [r[key] for r in evals], "o-", color="tab:red")
        label = "held-out loss" if key == "loss" else f"dev {key.replace('_', ' ')}"
        f1_ax.set_ylabel(label, color="tab:red")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return Path(png)
