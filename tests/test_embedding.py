"""The ONNX Runtime and OpenVINO embedding backends: PyTorch's vectors (close ones in int8
and bf16), cached exports, clear refusals.

A tiny randomly initialised BERT keeps exports to seconds; the real MiniLM in the default
backend (OpenVINO on a CPU) is what the index tests run on, and bench/retrieval.py measures
recall and speed.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

try:  # sentence-transformers 6 moved its modules; older releases keep them here
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
except ImportError:
    from sentence_transformers.models import Pooling, Transformer

from spanqa.runtime.embedder import Embedder, resolve_backend
from spanqa.runtime.onnx import graph_feeds
from spanqa.runtime.onnx_encoder import OnnxSentenceEncoder
from spanqa.runtime.openvino import openvino_available, openvino_offers_bf16

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino not installed")

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
    embedder = Embedder(str(path), backend="auto", device="cpu")
    assert embedder.backend == "torch"
    assert embedder.encode(["some text"]).shape == (1, 32)
    with pytest.raises(ValueError, match="torch backend"):
        Embedder(str(path), backend="onnx-int8")


def test_auto_backend_on_cpu_is_openvino_else_int8_onnx(monkeypatch):
    assert resolve_backend("auto", "cpu") == ("openvino" if openvino_available() else "onnx-int8")
    monkeypatch.setattr("spanqa.runtime.openvino.openvino_available", lambda: False)
    assert resolve_backend("auto", "cpu") == "onnx-int8"
    assert resolve_backend("auto", "cuda") == "torch"


@needs_openvino
def test_openvino_gives_pytorchs_vectors_in_fp32_and_close_ones_in_bf16(tiny_encoder_dir,
                                                                          tmp_path):
    st = tiny_st(tiny_encoder_dir)
    expected = torch_vectors(st)
    exact = OnnxSentenceEncoder(st, openvino=True, cache=tmp_path, batch_size=8).encode(TEXTS)
    assert exact.shape == expected.shape and exact.dtype == np.float32
    assert np.abs(exact - expected).max() < 1e-4  # row order survives the length sorting
    encoder = OnnxSentenceEncoder(st, openvino=True, bf16=True, cache=tmp_path)
    close = encoder.encode(TEXTS)
    # Without bf16 units OpenVINO computes a bf16 request in fp32: ask it which it ran.
    assert encoder.graph.precision == ("bf16" if openvino_offers_bf16() else "f32")
    if encoder.graph.precision == "bf16":
        assert not np.array_equal(close, exact)
    else:
        np.testing.assert_allclose(close, exact, rtol=0, atol=1e-6)
    assert (close * expected).sum(1).min() > 0.99
    with pytest.raises(ValueError, match="not int8"):
        OnnxSentenceEncoder(st, openvino=True, quantize=True, cache=tmp_path)


@needs_openvino
def test_openvino_encodes_from_several_threads_at_once(tiny_encoder_dir, tmp_path):
    """Each thread needs its own infer request, or one thread's inputs would be read with
    another's. (The server embeds under one lock; this guards any other caller. The
    tokenizer is not thread-safe, so the batches are tokenised first.)"""
    from concurrent.futures import ThreadPoolExecutor

    encoder = OnnxSentenceEncoder(tiny_st(tiny_encoder_dir), openvino=True, cache=tmp_path)
    batches = [graph_feeds(encoder.tokenizer(TEXTS[i::3], padding=True, truncation=True,
                                             max_length=64, return_tensors="np"),
                           encoder.inputs) for i in range(3)]
    alone = [encoder.hidden(feeds) for feeds in batches]
    for _ in range(3):
        with ThreadPoolExecutor(3) as pool:
            together = list(pool.map(encoder.hidden, batches))
        for a, b in zip(alone, together, strict=True):
            assert np.array_equal(a, b)


@needs_openvino
def test_openvino_that_cannot_reproduce_pytorch_falls_back_under_auto(
        tiny_encoder_dir, tmp_path, monkeypatch, caplog):
    path = tmp_path / "model"
    tiny_st(tiny_encoder_dir).save(str(path))
    monkeypatch.setattr("spanqa.runtime.openvino.MAX_ERROR", -1.0)  # no graph can pass
    with caplog.at_level(logging.WARNING):
        embedder = Embedder(str(path), backend="auto", device="cpu")
    assert "OpenVINO cannot run this model" in caplog.text
    assert embedder.backend == "onnx-int8"  # the next fastest on a CPU
    assert embedder.encode(["some text"]).shape == (1, 32)
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        Embedder(str(path), backend="openvino")


@pytest.mark.parametrize("backend, cosine", [
    ("onnx-int8", 0.9),
    pytest.param("openvino", 0.995, marks=needs_openvino)])
def test_real_minilm_keeps_what_is_close(backend, cosine):
    """The offline MiniLM in int8 or OpenVINO's precision: close to PyTorch's vectors, and
    the same nearest passage for each question."""
    passages = ["Tokyo is the capital of Japan.", "The Nile flows into the Mediterranean.",
                "K2 is the second highest mountain.", "Photosynthesis makes sugar from light."]
    questions = ["What is Japan's capital?", "Where does the Nile end?",
                 "Which mountain is second highest?", "How do plants make sugar?"]
    fast, exact = Embedder("minilm", backend=backend), Embedder("minilm", backend="torch")
    assert fast.backend == backend and exact.backend == "torch"
    p_fast, p_exact = fast.encode(passages), exact.encode(passages)
    assert ((p_fast * p_exact).sum(1) > cosine).all()
    best = (fast.encode(questions) @ p_fast.T).argmax(1)
    assert best.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("backend", ["onnx-int8", pytest.param("openvino", marks=needs_openvino)])
def test_question_vectors_do_not_depend_on_their_batch(backend):
    """int8 activations share one scale per batch, and bf16 sums move with the padding:
    questions are embedded alone, so a question retrieves the same passages whoever else
    asks at the same moment."""
    embedder = Embedder("minilm", backend=backend)
    questions = ["Where is Tokyo?", "A much longer question about the rivers of Europe?", "K2?"]
    together = embedder.encode_queries(questions)
    for i, question in enumerate(questions):
        assert np.array_equal(together[i], embedder.encode_queries([question])[0])
