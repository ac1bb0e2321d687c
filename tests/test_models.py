"""Loading encoders and tokenizers: offline alias, SpanBERT's cased tokenizer, hub failures."""

from __future__ import annotations

import json

import pytest
from transformers import BertConfig, BertModel

from spanqa.reader.models import load_qa_model
from spanqa.runtime import hub
from spanqa.runtime.hub import ModelLoadError, load_tokenizer


def test_offline_alias_loads_the_pretrained_minilm():
    tokenizer = load_tokenizer("minilm")
    model = load_qa_model("minilm")
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert tokenizer.tokenize("Hello") == ["hello"], "MiniLM is uncased"
    assert model.qa_outputs.out_features == 2


def test_hub_failure_names_the_offline_alternatives(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_qa_model("SpanBERT/spanbert-base-cased")
    message = str(info.value)
    assert "SpanBERT/spanbert-base-cased" in message
    assert "--model minilm" in message and "local directory" in message


def _spanbert_like_dir(tmp_path, cased_vocab):
    """What SpanBERT exports look like: config + weights + vocab.txt, no tokenizer config."""
    path = tmp_path / "spanbert-base-cased"
    config = BertConfig(vocab_size=len(cased_vocab), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    (path / "vocab.txt").write_text("\n".join(cased_vocab) + "\n", encoding="utf-8")
    return path


CASED_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Paris", "paris", "Is", "is"]


def test_spanbert_style_directory_gets_a_cased_tokenizer(tmp_path):
    path = _spanbert_like_dir(tmp_path, CASED_VOCAB)
    tokenizer = load_tokenizer(path)
    assert tokenizer.tokenize("Paris is") == ["Paris", "is"]
    model = load_qa_model(path)
    assert model.qa_outputs.out_features == 2


def test_spanbert_hub_id_uses_bert_cased_tokenizer_without_lower_casing(monkeypatch, tmp_path):
    """The hub is the one edge mocked: it serves BERT's cased vocabulary."""
    vocab_dir = tmp_path / "bert-base-cased"
    vocab_dir.mkdir()
    (vocab_dir / "vocab.txt").write_text("\n".join(CASED_VOCAB) + "\n", encoding="utf-8")
    calls = []
    real = hub.AutoTokenizer.from_pretrained

    def fake_hub(name, **kwargs):
        calls.append((name, kwargs))
        return real(str(vocab_dir), **kwargs) if name == "bert-base-cased" else real(name)

    (vocab_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True}))  # a lower-casing config
    monkeypatch.setattr(hub.AutoTokenizer, "from_pretrained", fake_hub)
    tokenizer = load_tokenizer("SpanBERT/spanbert-base-cased")
    assert calls[0] == ("bert-base-cased", {"do_lower_case": False})
    assert tokenizer.tokenize("Paris") == ["Paris"], "SpanBERT is never lower-cased"


def test_fine_tuned_spanbert_hub_id_is_loaded_cased(monkeypatch, tmp_path):
    """The default served reader (a SpanBERT fine-tuned by a third party) ships a vocab
    with no casing flag; it must be asked for cased, and a lower-casing one is refused."""
    vocab_dir = tmp_path / "hub"
    vocab_dir.mkdir()
    (vocab_dir / "vocab.txt").write_text("\n".join(CASED_VOCAB) + "\n", encoding="utf-8")
    calls = []
    real = hub.AutoTokenizer.from_pretrained

    def fake_hub(name, **kwargs):
        calls.append((name, kwargs))
        return real(str(vocab_dir), **kwargs)

    monkeypatch.setattr(hub.AutoTokenizer, "from_pretrained", fake_hub)
    (vocab_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer"}))
    tokenizer = load_tokenizer("mrm8488/spanbert-finetuned-squadv2")
    assert calls[0] == ("mrm8488/spanbert-finetuned-squadv2", {"do_lower_case": False})
    assert tokenizer.tokenize("Paris") == ["Paris"]


def test_directory_without_tokenizer_files_is_refused_clearly(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        load_tokenizer(tmp_path)


def test_missing_local_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="Offline alternatives"):
        load_qa_model(tmp_path / "nope")
