"""A span model: an encoder with a start/end head, loaded online or offline.

Names are resolved and failures explained by runtime/hub.py, which the embedder and
pretraining share; this module adds only what is particular to a reader: the span head.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import AutoConfig, AutoModelForQuestionAnswering, PreTrainedModel

from ..runtime.hub import offline_error, resolve

log = logging.getLogger(__name__)


def load_qa_model(name_or_path: str | Path, **overrides) -> PreTrainedModel:
    """An encoder with a start/end span head; a fresh head when the checkpoint has none."""
    name = resolve(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name, **overrides)
        model = AutoModelForQuestionAnswering.from_pretrained(name, config=config)
    except (OSError, ValueError) as exc:
        raise offline_error(name, exc) from exc
    if _fresh_head(name):
        log.info("%s has no span head: a new one is initialised for fine-tuning", name)
    return model


def _fresh_head(name: str) -> bool:
    """Whether the checkpoint lacks `qa_outputs` (a plain encoder, not a QA model)."""
    config = Path(name) / "config.json"
    if not config.is_file():
        return False
    architectures = json.loads(config.read_text()).get("architectures") or []
    return not any("QuestionAnswering" in a for a in architectures)
