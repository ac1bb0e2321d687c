"""Shared fixtures: the shared SQuAD files and tiny randomly initialised span models."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

# SPANQA_TEST_WITHOUT_OPENVINO=1 runs the suite as on a platform without OpenVINO's wheels,
# through the fallback paths: a package named openvino that refuses to import shadows the
# real one here and in every process a test starts (PYTHONPATH).
if os.environ.get("SPANQA_TEST_WITHOUT_OPENVINO"):
    _shadow = Path(tempfile.mkdtemp(prefix="spanqa-no-openvino-"))
    (_shadow / "openvino").mkdir()
    (_shadow / "openvino" / "__init__.py").write_text(
        'raise ModuleNotFoundError("openvino is made unimportable for this test run '
        '(SPANQA_TEST_WITHOUT_OPENVINO)")\n')
    sys.path.insert(0, str(_shadow))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(_shadow), os.environ.get("PYTHONPATH")]))

import pytest
from transformers import BertConfig, BertForQuestionAnswering

from spanqa.runtime.hub import load_tokenizer

# CI and these machines have no hub: fail fast instead of waiting on connection retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# The shared SQuAD set (../shared/squad/README.md): what `squad_dir` checks for.
SQUAD_FILES = ("sample-v1.1.json", "sample-v2.0.json", "dev-v1.1.json", "dev-v2.0.json",
               "train-v1.1.json", "train-v2.0.json")


def in_ci() -> bool:
    """CI sets $CI: there everything the project's own setup provides (scripts/install.sh,
    ../shared beside the clone) must be present."""
    return bool(os.environ.get("CI"))


def unavailable(reason: str) -> NoReturn:
    """Stop a test that lacks something the project's own setup provides (the shared SQuAD
    files, the browser): a skip on a developer's machine, a failure under CI, where a skip
    would let the test pass unseen. `reason` says what is missing and where it was looked for."""
    if in_ci():
        pytest.fail(f"{reason} [CI is set: a failure, not a skip]", pytrace=False)
    pytest.skip(reason)


def squad_root() -> Path:
    """Where the shared SQuAD files are looked for: $SPANQA_SQUAD_DIR, else ../shared/squad
    beside the repository (the same rule as `api.cli.squad_dir` and the bench scripts)."""
    return Path(os.environ.get("SPANQA_SQUAD_DIR", REPO.parent / "shared" / "squad"))


def _where() -> str:
    if "SPANQA_SQUAD_DIR" in os.environ:
        return "from $SPANQA_SQUAD_DIR"
    return "the default; set $SPANQA_SQUAD_DIR to look elsewhere"


def squad_file(name: str) -> Path:
    """A file of the shared SQuAD set (`name` relative to its folder, e.g. "dev-v1.1.json");
    the test stops through `unavailable` (fails under CI) when it is not there."""
    directory = squad_root()
    path = directory / name
    if not path.is_file():
        unavailable(f"shared SQuAD file {name} not found in {directory} ({_where()})")
    return path


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
    """The folder of the shared SQuAD set, with every file of SQUAD_FILES in it (else the
    test stops through `unavailable`: fails under CI, skips elsewhere)."""
    directory = squad_root()
    if not directory.is_dir():
        unavailable(f"shared SQuAD folder {directory} not found ({_where()})")
    lacking = [name for name in SQUAD_FILES if not (directory / name).is_file()]
    if lacking:
        unavailable(f"shared SQuAD files not found in {directory} ({_where()}): "
                    + ", ".join(lacking))
    return directory


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
