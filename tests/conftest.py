"""Shared fixtures: the shared SQuAD files and tiny randomly initialised span models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from transformers import BertConfig, BertForQuestionAnswering

from reader.models import load_tokenizer

# CI and these machines have no hub: fail fast instead of waiting on connection retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SQUAD = Path(os.environ.get("SPANQA_SQUAD_DIR", REPO.parent / "shared" / "squad"))


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """ONNX exports go to a folder of this session (shared by its tests and the servers
    they start), never into the repository's data/."""
    path = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPANQA_ONNX_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def squad_dir() -> Path:
    if not (SQUAD / "sample-v1.1.json").is_file():
        pytest.skip(f"shared SQuAD files not found in {SQUAD}")
    return SQUAD


def make_tiny_model(path: Path, *, dropout: float = 0.1, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with the offline MiniLM's (uncased) tokenizer."""
    import torch

    torch.manual_seed(seed)
    tokenizer = load_tokenizer("minilm")
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=256,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    BertForQuestionAnswering(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model_no_dropout(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-nodrop") / "model", dropout=0.0)


@pytest.fixture(scope="session")
def minilm_tokenizer():
    return load_tokenizer("minilm")


@pytest.fixture(scope="session")
def cased_tokenizer(tmp_path_factory):
    """A cased WordPiece tokenizer over a small vocabulary (like SpanBERT's, offline)."""
    from transformers import BertTokenizerFast

    words = ["Paris", "paris", "Caf", "##é", "é", "e", "The", "the", "is", "in", "France",
             "capital", "of", "What", "?", ".", ",", "東", "京", "naïve", "na", "##ï", "##ve",
             "タ", "##ワ", "##ー", "##は"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    path = tmp_path_factory.mktemp("cased") / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab=str(path), do_lower_case=False)
