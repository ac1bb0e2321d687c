"""The ONNX Runtime embedding backend: same vectors as PyTorch, cached exports, clear refusals.

A tiny randomly initialised BERT keeps exports to seconds; the real MiniLM in int8 is what
the index tests (and bench/retrieval.py for recall and speed) run on.
"""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

try:  # sentence-transformers 6 moved its modules; older releases keep them here
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
except ImportError:
    from sentence_transformers.models import Pooling, Transformer

from indexer.embedding import Embedder, resolve_backend
from indexer.onnx_encoder import OnnxSentenceEncoder

TEXTS = [
    "Tokyo is the capital of Japan.",
    "Café déjà vu: naïve coöperation, with combining accents (e\u0301).",
    "東京は日本の首都です。",
    "Emoji 😀🚀 and ZWJ 👩‍👩‍👧 sequences.",
    "",
    "word " * 600,  # truncated at the model's maximum length
] + [f"passage {i} " + "text " * (i * 7 % 40) for i in range(40)]  # several batches


def tiny_st(model_dir, pooling: str = "mean") -> SentenceTransformer:
    transformer = Transformer(str(model_dir), max_seq_length=64)
    return SentenceTransformer(
        modules=[transformer, Pooling(transformer.auto_model.config.hidden_size, pooling)],
        device="cpu")


def torch_vectors(st: SentenceTransformer) -> np.ndarray:
    return st.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="module")
def tiny_encoder_dir(tiny_model_no_dropout):
    return tiny_model_no_dropout


def test_fp32_export_reproduces_pytorch(tiny_encoder_dir, tmp_path):
    st = tiny_st(tiny_encoder_dir)
    encoder = OnnxSentenceEncoder(st, quantize=False, cache=tmp_path, batch_size=8)
    got = encoder.encode(TEXTS)
    expected = torch_vectors(st)
    assert got.shape == expected.shape and got.dtype == np.float32
    # Row order survives the length sorting; every row matches its own text.
    assert np.abs(got - expected).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_cls_pooling_and_int8(tiny_encoder_dir, tmp_path):
    st = tiny_st(tiny_encoder_dir, "cls")
    expected = torch_vectors(st)
    got = OnnxSentenceEncoder(st, quantize=True, cache=tmp_path).encode(TEXTS)
    cosines = (got * expected).sum(1)
    assert cosines.min() > 0.9, cosines.min()
    assert OnnxSentenceEncoder(st, quantize=False, cache=tmp_path).encode(TEXTS) \
        == pytest.approx(expected, abs=1e-4)


def test_export_is_cached_per_weights(tiny_encoder_dir, tmp_path):
    st = tiny_st(tiny_encoder_dir)
    OnnxSentenceEncoder(st, quantize=False, cache=tmp_path)
    (exported,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    model_file = exported / "model.onnx"
    stamp = model_file.stat().st_mtime_ns
    (tmp_path / ".export-killed").mkdir()  # what a killed export leaves: ignored
    OnnxSentenceEncoder(st, quantize=False, cache=tmp_path)
    assert model_file.stat().st_mtime_ns == stamp  # reused, not exported again
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) \
        == [exported.name]

    import torch

    with torch.no_grad():  # other weights: another export, never the stale one
        st[0].auto_model.embeddings.word_embeddings.weight[5] += 1.0
    OnnxSentenceEncoder(st, quantize=False, cache=tmp_path)
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2
    OnnxSentenceEncoder(st, quantize=True, cache=tmp_path)
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 3


def test_unsupported_models_are_refused_clearly(tiny_encoder_dir, tmp_path):
    st = tiny_st(tiny_encoder_dir, "max")
    with pytest.raises(ValueError, match="torch backend"):
        OnnxSentenceEncoder(st, quantize=False, cache=tmp_path)
    with pytest.raises(ValueError, match="backend must be"):
        resolve_backend("tensorrt")


def test_auto_falls_back_to_pytorch_for_models_onnx_cannot_run(tiny_encoder_dir, tmp_path):
    path = tmp_path / "max-pooling"
    tiny_st(tiny_encoder_dir, "max").save(str(path))
    embedder = Embedder(str(path), backend="auto")
    assert embedder.backend == "torch"
    assert embedder.encode(["some text"]).shape == (1, 32)
    with pytest.raises(ValueError, match="torch backend"):
        Embedder(str(path), backend="onnx-int8")


def test_auto_backend_is_int8_onnx_on_cpu():
    assert resolve_backend("auto", "cpu") == "onnx-int8"
    assert resolve_backend("auto", "cuda") == "torch"


def test_real_minilm_int8_keeps_what_is_close():
    """The offline MiniLM in int8: same nearest passage as PyTorch for each question."""
    passages = ["Tokyo is the capital of Japan.", "The Nile flows into the Mediterranean.",
                "K2 is the second highest mountain.", "Photosynthesis makes sugar from light."]
    questions = ["What is Japan's capital?", "Where does the Nile end?",
                 "Which mountain is second highest?", "How do plants make sugar?"]
    fast, exact = Embedder("minilm", backend="onnx-int8"), Embedder("minilm", backend="torch")
    assert fast.backend == "onnx-int8" and exact.backend == "torch"
    p_fast, p_exact = fast.encode(passages), exact.encode(passages)
    assert ((p_fast * p_exact).sum(1) > 0.9).all()
    best = (fast.encode(questions) @ p_fast.T).argmax(1)
    assert best.tolist() == [0, 1, 2, 3]


def test_int8_question_vectors_do_not_depend_on_their_batch():
    """int8 activations share one scale per batch: questions are embedded alone, so a
    question retrieves the same passages whoever else asks at the same moment."""
    embedder = Embedder("minilm", backend="onnx-int8")
    questions = ["Where is Tokyo?", "A much longer question about the rivers of Europe?", "K2?"]
    together = embedder.encode_queries(questions)
    for i, question in enumerate(questions):
        assert np.array_equal(together[i], embedder.encode_queries([question])[0])
