"""Fine-tuning: checkpoints, curves, resume after a kill, and data-parallel equivalence."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spanqa.reader.batching import collate, length_grouped_batches, random_batches, sorted_batches
from spanqa.reader.checkpoint import load_trainer_state
from spanqa.reader.config import TrainConfig
from spanqa.reader.features import Features
from spanqa.reader.loop import REPLAN_EVERY, LinearSchedule, linear_schedule, optimizer_groups
from spanqa.reader.train import train

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(max_seq_length=128, doc_stride=32, max_query_length=32, eval_batch_size=32,
             progress=False, log_every=1)


def _config(squad_dir, model, out, version="1.1", **kw) -> TrainConfig:
    data = str(squad_dir / f"sample-v{version}.json")
    settings = dict(train=data, dev=data, out=str(out), model=str(model), batch_size=8,
                    lr=1e-3, epochs=1, evals_per_epoch=2, **SMALL)
    return TrainConfig(**{**settings, **kw})


def _cli_args(cfg: TrainConfig) -> list[str]:
    args = []
    for key, value in vars(cfg).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        elif value is not None:
            args += [flag, str(value)]
    return args


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_writes_safetensors_checkpoints_metrics_and_curves(squad_dir, tiny_model,
                                                                     tmp_path):
    cfg = _config(squad_dir, tiny_model, tmp_path / "run", max_dev_examples=12, warmup=0.3)
    summary = train(cfg)
    run = tmp_path / "run"
    best, last = run / "best", run / "last"
    assert (best / "model.safetensors").is_file() and not list(best.glob("*.bin"))
    meta = json.loads((best / "spanqa.json").read_text())
    assert meta["train_args"]["lr"] == 1e-3 and meta["version"] == "1.1"
    assert meta["threshold"] is None and "f1" in meta["scores"]
    assert (best / "tokenizer.json").is_file()
    for name in ("predictions.json", "nbest_predictions.json", "null_odds.json"):
        assert (best / name).is_file()
    state = load_trainer_state(last)
    assert state["step"] == summary["steps"] and "optimizer" in state
    records = _metrics(run)
    trains = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    assert len(evals) >= 2 and all("exact_match" in r for r in evals)
    # The logged rate follows the configured schedule: linear warm-up over the first 30% of
    # the steps to cfg.lr, then linear decay to 0 (logged after each step, log_every=1).
    total = summary["planned_steps"]
    warm = int(cfg.warmup * total)
    assert summary["steps"] == total and 1 <= warm < total - 1, (warm, total)
    expected = [cfg.lr * (s / warm if s < warm else (total - s) / (total - warm))
                for s in range(1, total + 1)]
    assert [r["step"] for r in trains] == list(range(1, total + 1))
    assert [r["lr"] for r in trains] == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert trains[warm - 1]["lr"] == pytest.approx(cfg.lr) and trains[-1]["lr"] == 0
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_falls_when_a_small_set_is_learned(squad_dir, tiny_model, tmp_path):
    train(_config(squad_dir, tiny_model, tmp_path / "run", dev=None, max_train_examples=8,
                  epochs=25, lr=3e-3, warmup=0.0))
    losses = [r["loss"] for r in _metrics(tmp_path / "run") if r["type"] == "train"]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_v2_training_tunes_and_stores_a_no_answer_threshold(squad_dir, tiny_model, tmp_path):
    train(_config(squad_dir, tiny_model, tmp_path / "run", version="2.0", evals_per_epoch=1))
    best = tmp_path / "run" / "best"
    meta = json.loads((best / "spanqa.json").read_text())
    assert meta["version"] == "2.0" and isinstance(meta["threshold"], float)
    scores = meta["scores"]
    for key in ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh"):
        assert key in scores
    assert meta["threshold"] == -scores["best_f1_thresh"]
    null_odds = json.loads((best / "null_odds.json").read_text())
    predictions = json.loads((best / "predictions.json").read_text())
    assert set(null_odds) == set(predictions)


def test_weight_decay_spares_biases_and_layer_norms(tiny_model):
    from spanqa.reader.models import load_qa_model

    model = load_qa_model(tiny_model)
    decay, no_decay = optimizer_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("weight") and "LayerNorm" not in names[id(p)]
               for p in decay["params"])
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)]
               for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_length_grouped_batches_are_a_seeded_partition_with_little_padding():
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(20, 384, (3000,), generator=gen).tolist()
    batches = length_grouped_batches(lengths, 16, seed=42, epoch=0)
    assert batches == length_grouped_batches(lengths, 16, seed=42, epoch=0)
    assert batches != length_grouped_batches(lengths, 16, seed=42, epoch=1)
    assert sorted(i for b in batches for i in b) == list(range(3000))

    def padding(bs):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)

    assert padding(batches) < 0.1 * padding(random_batches(3000, 16, seed=42, epoch=0))


def test_collate_pads_only_to_the_longest_window():
    feats = Features(input_ids=[[1, 2, 3], [4, 5]], token_type_ids=[[0, 0, 1], [0, 1]],
                     example_index=[0, 1], offsets=[[None] * 3, [None] * 2],
                     start_positions=[1, 0], end_positions=[2, 0])
    batch = collate(feats, [0, 1], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 5, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert collate(feats, [1], pad_id=0, pad_to=8)["input_ids"].shape == (1, 8)


def _cost(lengths: list[int], batches: list[list[int]], overhead: float) -> float:
    return sum(max(lengths[i] for i in b) * (len(b) + overhead) for b in batches)


def _cheapest(lengths: list[int], size: int, overhead: float) -> float:
    """Brute force: every way to cut the longest-first order into batches of at most `size`."""
    ordered = sorted(lengths, reverse=True)
    best = float("inf")
    for cuts in itertools.product((False, True), repeat=len(ordered) - 1):
        bounds = [0, *(i + 1 for i, cut in enumerate(cuts) if cut), len(ordered)]
        spans = list(itertools.pairwise(bounds))
        if all(b - a <= size for a, b in spans):
            best = min(best, sum(ordered[a] * (b - a + overhead) for a, b in spans))
    return best


def test_sorted_batches_cut_where_padding_costs_more_than_a_pass():
    gen = torch.Generator().manual_seed(3)
    for _ in range(30):
        lengths = torch.randint(20, 257, (int(torch.randint(1, 13, (1,), generator=gen)),),
                                generator=gen).tolist()
        batches = sorted_batches(lengths, 4, overhead=0.25)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert all(1 <= len(b) <= 4 for b in batches)
        flat = [i for b in batches for i in b]
        assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
        assert _cost(lengths, batches, 0.25) == pytest.approx(_cheapest(lengths, 4, 0.25))
        assert _cost(lengths, batches, 0.25) <= _cost(lengths, sorted_batches(lengths, 4), 0.25)
    # Like lengths share a pass; far-apart ones are not padded to each other.
    assert sorted(map(len, sorted_batches([100] * 10, 4, overhead=0.25))) == [2, 4, 4]
    assert sorted_batches([50, 250, 52, 248], 8, overhead=0.25) == [[1, 3], [2, 0]]
    assert sorted_batches([50, 250, 52, 248], 8) == [[1, 3, 2, 0]]


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_a_run_killed_mid_way_resumes_to_the_uninterrupted_result(squad_dir, tiny_model,
                                                                   tmp_path):
    """SIGKILL while training (checkpoints every step, dropout on), resume, compare."""
    common = dict(dev=None, epochs=3, save_steps=1, evals_per_epoch=1, lr=5e-4)
    torch.set_num_threads(1)  # the same thread count as the subprocess, for identical sums
    try:
        train(_config(squad_dir, tiny_model, tmp_path / "whole", **common))
        killed = _config(squad_dir, tiny_model, tmp_path / "killed", **common)
        proc = subprocess.Popen([sys.executable, "-m", "spanqa.api.cli", "reader", "train",
                                 *_cli_args(killed)], env=_env(), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        meta = tmp_path / "killed" / "last" / "spanqa.json"
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if meta.is_file() and json.loads(meta.read_text() or "{}").get("step", 0) >= 4:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        killed.resume = True
        summary = train(killed)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    whole = _weights(tmp_path / "whole" / "last")
    resumed = _weights(tmp_path / "killed" / "last")
    assert summary["steps"] == load_trainer_state(tmp_path / "whole" / "last")["step"]
    for name, tensor in whole.items():
        assert torch.equal(tensor, resumed[name]), name
    losses = [[r["loss"] for r in _metrics(tmp_path / run) if r["type"] == "train"]
              for run in ("whole", "killed")]
    assert losses[0] == losses[1]


def test_two_processes_train_like_one_with_the_same_global_batch(squad_dir,
                                                                 tiny_model_no_dropout,
                                                                 tmp_path):
    """torchrun with 2 CPU processes (gloo) against 1 process with 2 accumulation steps."""
    common = dict(dev=None, epochs=1, max_train_examples=20, evals_per_epoch=1, lr=1e-3)
    one = _config(squad_dir, tiny_model_no_dropout, tmp_path / "one", grad_accum=2, **common)
    two = _config(squad_dir, tiny_model_no_dropout, tmp_path / "two", **common)
    subprocess.run([sys.executable, "-m", "spanqa.api.cli", "reader", "train", *_cli_args(one)],
                   env=_env(), cwd=REPO, check=True, capture_output=True)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "spanqa.api.cli", "reader", "train", *_cli_args(two)],
        env=_env(), cwd=REPO, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = _weights(tmp_path / "one" / "best"), _weights(tmp_path / "two" / "best")
    init = _weights(tiny_model_no_dropout)
    assert max((a[k] - init[k]).abs().max().item() for k in a) > 1e-3, "training moved"
    # Weights agree to float noise. The exception is a handful of elements whose true
    # gradient is zero (e.g. the span head's bias: a softmax over positions ignores a
    # shift), where Adam turns rounding noise into full-size steps in either direction.
    total = sum(t.numel() for t in a.values())
    off = sum(((a[k] - b[k]).abs() > 1e-5).sum().item() for k in a)
    assert off <= 1e-4 * total, f"{off} of {total} weights differ"
    losses = [[r["loss"] for r in _metrics(tmp_path / run) if r["type"] == "train"]
              for run in ("one", "two")]
    assert len(losses[0]) == len(losses[1]) > 1
    for x, y in zip(*losses, strict=True):
        assert abs(x - y) <= 1e-5 * max(1.0, abs(x)), losses


@pytest.mark.parametrize("bad", ["missing.json", "not-json"])
def test_bad_training_data_is_a_clear_cli_error(tmp_path, tiny_model, bad):
    path = tmp_path / "bad.json"
    if bad == "not-json":
        path.write_text("{ nope")
    else:
        path = tmp_path / bad
    run = subprocess.run([sys.executable, "-m", "spanqa.api.cli", "reader", "train", "--train",
                          str(path), "--out", str(tmp_path / "o"), "--model", str(tiny_model)],
                         env=_env(), cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2
    assert "spanqa: error:" in run.stderr and str(path.name) in run.stderr


def test_resume_refuses_changed_settings(squad_dir, tiny_model, tmp_path):
    cfg = _config(squad_dir, tiny_model, tmp_path / "run", dev=None, max_steps=2)
    train(cfg)
    cfg.resume, cfg.lr = True, 5e-4
    with pytest.raises(ValueError, match=re.escape("lr: 0.001 -> 0.0005")):
        train(cfg)


def test_time_cap_stops_training_evaluates_and_resumes_with_the_time_spent(squad_dir,
                                                                          tiny_model, tmp_path):
    run = tmp_path / "run"
    cfg = _config(squad_dir, tiny_model, run, batch_size=2, max_dev_examples=6,
                  max_train_seconds=1e-6)
    summary = train(cfg)
    assert summary["steps"] == 1 < summary["planned_steps"]
    evals = [m for m in _metrics(run) if m["type"] == "eval"]
    assert [m["step"] for m in evals] == [1]  # the stop is evaluated and checkpointed
    assert summary["best"]["step"] == 1 and (run / "best" / "model.safetensors").is_file()
    spent = load_trainer_state(run / "last")["train_seconds"]
    assert 0 < spent < summary["train_seconds"] + 1e-6  # evaluation time is not training
    # A resumed run whose time is spent does not train further.
    cfg.resume = True
    assert train(cfg)["steps"] == 1
    # Resuming with a larger cap counts the time already spent and takes more steps.
    cfg.max_train_seconds = spent + 3600
    assert train(cfg)["steps"] == summary["planned_steps"]


@pytest.mark.parametrize("max_norm", [0.0, 1.0])
def test_gradient_clipping_is_optional(max_norm):
    """`max_grad_norm` 0 leaves gradients alone (the reference recipe's setting)."""
    from spanqa.reader.loop import optimizer_step

    weight = torch.nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    weight.grad = torch.full((4,), 3.0)  # norm 6
    optimizer_step(torch.nn.ParameterList([weight]), optimizer, scheduler, scaler, max_norm)
    moved = weight.detach().norm().item()
    assert moved == pytest.approx(max_norm if max_norm else 6.0)


def test_a_run_fitted_to_a_time_budget_decays_to_zero_where_it_stops(squad_dir, tiny_model,
                                                                     tmp_path):
    """--plan-seconds re-plans the schedule every REPLAN_EVERY steps to the steps that fit:
    the run ends with the learning rate at 0, well before the step cap."""
    cfg = _config(squad_dir, tiny_model, tmp_path / "run", dev=None, batch_size=2,
                  epochs=1000, max_steps=100_000, plan_seconds=3.0, warmup=0.0)
    summary = train(cfg)
    trains = [r for r in _metrics(tmp_path / "run") if r["type"] == "train"]
    assert REPLAN_EVERY < summary["steps"] == summary["planned_steps"] < 100_000
    assert [r["step"] for r in trains] == list(range(1, summary["steps"] + 1))
    assert trains[-1]["lr"] == 0 and all(r["lr"] > 0 for r in trains[:-1])
    assert trains[0]["lr"] == pytest.approx(cfg.lr, rel=1e-3)  # planned for 100k at first
    # A hang guard, not a speed test: the plan follows the pace it measures.
    assert summary["train_seconds"] < 60


def test_a_re_planned_schedule_is_kept_in_the_scheduler_state():
    model = torch.nn.Linear(2, 2)
    first = linear_schedule(torch.optim.SGD(model.parameters(), lr=1.0), 0.1, 1000)
    first.lr_lambdas[0].total = 40
    second = linear_schedule(torch.optim.SGD(model.parameters(), lr=1.0), 0.1, 1000)
    second.load_state_dict(first.state_dict())
    assert second.lr_lambdas[0] == LinearSchedule(warmup=100, total=40)
    assert [LinearSchedule(2, 6)(s) for s in range(8)] == [0, 0.5, 1, 0.75, 0.5, 0.25, 0, 0]
