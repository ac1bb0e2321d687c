"""The reader's OpenVINO backend: PyTorch's answers in fp32, close ones in bf16, one infer
request per thread, and PyTorch when a conversion cannot be trusted."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from test_reader_onnx import CONFIG, CONTEXTS, QUESTIONS  # the same odd texts

from spanqa.reader.backends import resolve_backend
from spanqa.reader.features import build_features
from spanqa.reader.inference import predict_logits
from spanqa.reader.openvino_span import OpenVinoSpanModel
from spanqa.reader.reader import Reader
from spanqa.runtime.onnx import graph_feeds
from spanqa.runtime.openvino import openvino_offers_bf16

pytest.importorskip("openvino")


def load(model, **kwargs) -> Reader:
    return Reader.from_pretrained(model, config=CONFIG, device="cpu", batch_size=2, **kwargs)


@pytest.fixture(scope="module")
def readers(tiny_model_no_dropout):
    return {name: load(tiny_model_no_dropout, backend=backend, precision=precision)
            for name, (backend, precision) in {
                "torch": ("torch", "fp32"), "openvino": ("openvino", "fp32"),
                "openvino-bf16": ("openvino", "bf16")}.items()}


def logits(runner, features) -> np.ndarray:
    starts, ends = predict_logits(runner, features, pad_id=0, batch_size=3)
    return np.concatenate(starts + ends)


@pytest.fixture(scope="module")
def features(readers):
    questions = [q for q, ctxs in zip(QUESTIONS, CONTEXTS, strict=True) for _ in ctxs]
    contexts = [c for ctxs in CONTEXTS for c in ctxs]
    features = build_features(readers["torch"].tokenizer, questions, contexts, CONFIG)
    assert len(features) >= 8 and len(set(features.lengths)) > 1  # padded batches too
    return features


def test_auto_reads_with_openvino_on_the_cpu_in_the_cpus_precision(tiny_model_no_dropout,
                                                                   monkeypatch):
    for bf16_units in (True, False):
        monkeypatch.setattr("spanqa.runtime.device.cpu_has_bf16", lambda b=bf16_units: b)
        reader = load(tiny_model_no_dropout)
        assert reader.backend == "openvino" and isinstance(reader.runner, OpenVinoSpanModel)
        # Asked for bf16 where SpanQA sees bf16 units; what it computes in is the runtime's
        # answer, which on a CPU without them is fp32 whatever was asked.
        assert reader.dtype == (torch.bfloat16 if bf16_units else None)
        ran = "bf16" if bf16_units and openvino_offers_bf16() else "f32"
        assert reader.runner.precision == ran
        assert reader.dtype_name == {"bf16": "bfloat16", "f32": "float32"}[ran]
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_backend("openvino", torch.device("cuda"))
    with pytest.raises(ValueError, match="reads in fp32 or bf16"):
        load(tiny_model_no_dropout, backend="openvino", precision="fp16")


def test_fp32_openvino_gives_pytorchs_logits_and_answers(readers, features):
    np.testing.assert_allclose(logits(readers["openvino"].runner, features),
                               logits(readers["torch"].runner, features), atol=1e-3)
    for question, contexts in zip(QUESTIONS, CONTEXTS, strict=True):
        expected = readers["torch"].answer(question, contexts, top_k=3)
        got = readers["openvino"].answer(question, contexts, top_k=3)
        assert [(a.text, a.start, a.context_index) for a in got] == [
            (a.text, a.start, a.context_index) for a in expected]


def test_bf16_openvino_stays_close_to_fp32(readers, features):
    """What a bf16 request gives depends on the CPU: the runtime says which it ran."""
    exact = logits(readers["torch"].runner, features)
    fp32 = logits(readers["openvino"].runner, features)
    runner = readers["openvino-bf16"].runner
    close = logits(runner, features)
    assert runner.precision == ("bf16" if openvino_offers_bf16() else "f32")
    if runner.precision == "bf16":  # 8 bits of mantissa: the logits move, but only a little
        assert not np.array_equal(close, fp32)
        assert np.abs(close - exact).max() < 0.02 * (np.ptp(exact) + 1e-6)
    else:  # the request was computed in fp32: the fp32 graph's logits
        np.testing.assert_allclose(close, fp32, rtol=0, atol=1e-6)


def test_threads_reading_at_once_each_get_their_own_logits(readers, features):
    runner = readers["openvino"].runner
    subsets = [features.subset(list(range(i, len(features), 3))) for i in range(3)]
    expected = [logits(runner, s) for s in subsets]
    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            got = list(pool.map(lambda s: logits(runner, s), subsets))
            for e, g in zip(expected, got, strict=True):
                np.testing.assert_array_equal(g, e)


def test_tokens_are_padded_to_a_shape_step_and_the_outputs_cut_back(readers):
    """OpenVINO prepares kernels per input shape, so lengths are rounded up to few shapes;
    the padding is masked and must not change a logit."""
    graph = readers["openvino"].runner.graph
    batch = readers["torch"].tokenizer(QUESTIONS[:2], [c[0] for c in CONTEXTS[:2]],
                                       padding=True, return_tensors="np")
    feeds = graph_feeds(batch, graph.input_names)
    length = feeds["input_ids"].shape[1]
    step = graph.shape_step
    assert step > 1 and length % step  # else the test would show nothing
    padded = graph.infer(feeds)
    assert graph._local.request.get_input_tensor(0).shape[1] == -(-length // step) * step
    try:
        graph.shape_step = 1
        exact = graph.infer(feeds)
        assert graph._local.request.get_input_tensor(0).shape[1] == length
    finally:
        graph.shape_step = step
    for got, want in zip(padded, exact, strict=True):
        assert got.shape == want.shape == (2, length)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_reader_that_keeps_only_its_compiled_graph_reads_the_same(tiny_model_no_dropout,
                                                                     readers):
    """The pipeline drops the fp32 weights a compiled graph leaves idle; a reader whose
    runner is those weights keeps them."""
    lean = load(tiny_model_no_dropout, backend="openvino", precision="fp32", keep_model=False)
    assert lean.model is None
    for question, contexts in zip(QUESTIONS, CONTEXTS, strict=True):
        expected = readers["openvino"].answer(question, contexts, top_k=3)
        assert [(a.text, a.start, a.score) for a in lean.answer(question, contexts, top_k=3)] \
            == [(a.text, a.start, a.score) for a in expected]
    plain = load(tiny_model_no_dropout, backend="torch", precision="fp32", keep_model=False)
    assert plain.runner.model is plain.model


def test_a_conversion_that_differs_from_pytorch_falls_back_or_fails(
        tiny_model, monkeypatch, caplog):
    monkeypatch.setattr("spanqa.runtime.openvino.MAX_ERROR", -1.0)  # no conversion can pass
    with caplog.at_level(logging.WARNING):
        reader = load(tiny_model)
    assert reader.backend == "torch" and "OpenVINO cannot run this model" in caplog.text
    assert reader.answer(QUESTIONS[0], CONTEXTS[0])  # and it still reads
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        load(tiny_model, backend="openvino")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the converter's torch.jit.trace
def test_building_a_reader_never_starts_openvinos_usage_telemetry(tiny_model, monkeypatch):
    """OpenVINO's model converter reports usage to Intel unless the user opted out; SpanQA
    hands the runtime a plain ONNX export instead, so nothing is reported."""
    telemetry = pytest.importorskip("openvino_telemetry.main").Telemetry
    calls = []
    monkeypatch.setattr(telemetry, "init", lambda self, *a, **k: calls.append("init"))
    monkeypatch.setattr(telemetry, "send_event", lambda self, *a, **k: calls.append("send"))
    reader = load(tiny_model, backend="openvino")
    assert reader.backend == "openvino" and reader.answer(QUESTIONS[0], CONTEXTS[0])
    assert calls == []
    # The recorder would have seen the converter (so the assertion above can fail).
    import openvino as ov

    ov.convert_model(torch.nn.Linear(2, 2), example_input=torch.ones(1, 2))
    assert calls
