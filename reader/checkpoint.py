"""Checkpoint directories: written atomically, read without unpickling anything untrusted.

A checkpoint is an ordinary Hugging Face model directory (safetensors weights, config,
tokenizer) plus `spanqa.json` (training arguments, scores, no-answer threshold) and, for
the resumable `last/` checkpoint, `trainer_state.pt` (optimizer, scheduler, RNG) which is
loaded with `weights_only=True`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from ..core.atomic import fsync_dir, fsync_tree

META_FILE = "spanqa.json"
STATE_FILE = "trainer_state.pt"


def save_checkpoint(
    path: str | Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    meta: dict[str, Any],
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint next to `path`, then swap it in, so a kill never leaves half of one.

    The old checkpoint is renamed aside before the new one takes its name; `resolve_checkpoint`
    falls back to that copy if the process dies between the two renames.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    old = path.with_name(f".old-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    if trainer_state is not None:
        torch.save(trainer_state, tmp / STATE_FILE)
    fsync_tree(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    return path



def resolve_checkpoint(path: str | Path) -> Path | None:
    """The usable checkpoint at `path` (or the aside copy of an interrupted swap)."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    old = path.with_name(f".old-{path.name}")
    if (old / META_FILE).is_file():
        return old
    return None


def read_meta(path: str | Path) -> dict[str, Any]:
    file = Path(path) / META_FILE
    return json.loads(file.read_text()) if file.is_file() else {}


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=True)
