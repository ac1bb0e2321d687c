"""The reader's ONNX Runtime backends: PyTorch's answers in fp32, close ones in int8,
clear refusals, and PyTorch when an export cannot be trusted."""

from __future__ import annotations

import logging
import os
import shutil
import time

import numpy as np
import onnx
import pytest
import torch

from spanqa.reader.backends import resolve_backend
from spanqa.reader.features import FeatureConfig, build_features
from spanqa.reader.inference import predict_logits
from spanqa.reader.onnx_span import WINDOWS_PER_RUN, OnnxSpanModel
from spanqa.reader.openvino_span import OpenVinoSpanModel
from spanqa.reader.reader import Reader
from spanqa.runtime.openvino import openvino_available

QUESTIONS = ["What is the capital of France?", "Which café is naïve?", "東京は何ですか?"]
CONTEXTS = [
    ["Paris is the capital and most populous city of France, on the Seine. " * 12,  # windows
     "Berlin is the capital of Germany."],
    ["Café déjà vu: naïve coöperation, with combining accents (e\u0301). 😀🚀"],
    ["東京は日本の首都です。", ""],
]
CONFIG = FeatureConfig(max_seq_length=64, doc_stride=16, max_query_length=16)


def spans(reader: Reader) -> list[list[tuple]]:
    return [[(p.null_score, [(a.text, a.start, a.end, a.score) for a in p.answers])
             for p in predictions]
            for predictions in reader.predict(QUESTIONS, CONTEXTS)]


@pytest.fixture(autouse=True)
def without_openvino(monkeypatch):
    """What `auto` picks where OpenVINO is not installed (tests/test_reader_openvino.py
    covers it where it is)."""
    monkeypatch.setattr("spanqa.reader.backends.openvino_available", lambda: False)


@pytest.fixture(scope="module")
def readers(tiny_model_no_dropout):
    """PyTorch in fp32 beside the ONNX graphs, whatever this CPU's bf16 units."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("spanqa.reader.backends.openvino_available", lambda: False)
        return {backend: Reader.from_pretrained(tiny_model_no_dropout, config=CONFIG,
                                                device="cpu", backend=backend, batch_size=2,
                                                precision="fp32")
                for backend in ("torch", "onnx", "onnx-int8", "auto")}


def all_logits(reader: Reader) -> np.ndarray:
    features = build_features(reader.tokenizer, [QUESTIONS[0]] * 2, CONTEXTS[0], CONFIG)
    starts, ends = predict_logits(reader.runner, features, pad_id=0, batch_size=4)
    return np.concatenate(starts + ends)


def test_without_openvino_auto_reads_fp32_with_fused_onnx_on_the_cpu(readers):
    assert readers["auto"].backend == "onnx" and readers["auto"].dtype is None
    assert readers["torch"].backend == "torch" and readers["torch"].dtype is None
    assert isinstance(readers["auto"].runner, OnnxSpanModel)


@pytest.mark.parametrize("bf16_units", [True, False])
def test_without_openvino_auto_reads_bf16_with_pytorch_where_the_cpu_has_bf16_units(
        tiny_model_no_dropout, monkeypatch, bf16_units):
    monkeypatch.setattr("spanqa.runtime.device.cpu_has_bf16", lambda: bf16_units)
    reader = Reader.from_pretrained(tiny_model_no_dropout, config=CONFIG, device="cpu")
    assert (reader.backend, reader.dtype) == (
        ("torch", torch.bfloat16) if bf16_units else ("onnx", None))
    assert reader.answer(QUESTIONS[1], CONTEXTS[1])  # and it reads


def test_bf16_reading_stays_close_to_fp32(readers, tiny_model_no_dropout):
    """bf16 keeps 8 bits of mantissa: logits move by well under 1% of their range, and
    each answer's text still points into its context."""
    bf16 = Reader.from_pretrained(tiny_model_no_dropout, config=CONFIG, device="cpu",
                                  backend="torch", precision="bf16", batch_size=2)
    assert bf16.dtype == torch.bfloat16
    # It reads with a bf16 copy of the weights; the model it was given stays fp32.
    assert next(bf16.runner.model.parameters()).dtype == torch.bfloat16
    assert next(bf16.model.parameters()).dtype == torch.float32
    exact, close = all_logits(readers["torch"]), all_logits(bf16)
    assert np.abs(close - exact).max() < 0.02 * (np.ptp(exact) + 1e-6)
    for question, contexts in zip(QUESTIONS, CONTEXTS, strict=True):
        for a in bf16.answer(question, contexts, top_k=3):
            assert contexts[a.context_index][a.start : a.end] == a.text


def test_onnx_refuses_a_precision_it_cannot_read_in(tiny_model_no_dropout):
    with pytest.raises(ValueError, match="reads in fp32 or int8"):
        Reader.from_pretrained(tiny_model_no_dropout, config=CONFIG, device="cpu",
                               backend="onnx", precision="bf16")


def test_fp32_onnx_gives_pytorchs_spans_and_scores(readers):
    expected, got = spans(readers["torch"]), spans(readers["onnx"])
    for exp_q, got_q in zip(expected, got, strict=True):
        for (exp_null, exp_spans), (got_null, got_spans) in zip(exp_q, got_q, strict=True):
            assert got_null == pytest.approx(exp_null, abs=1e-3)
            assert [s[:3] for s in got_spans[:5]] == [s[:3] for s in exp_spans[:5]]
            assert [s[3] for s in got_spans] == pytest.approx([s[3] for s in exp_spans],
                                                              abs=1e-3)


def test_runs_on_several_cores_give_each_window_its_own_logits(readers):
    """Batches read concurrently come back in order: every window gets its own logits."""
    reader = readers["onnx"]
    questions = [q for q, ctxs in zip(QUESTIONS, CONTEXTS, strict=True) for _ in ctxs]
    contexts = [c for ctxs in CONTEXTS for c in ctxs]
    features = build_features(reader.tokenizer, questions, contexts, CONFIG)
    assert len(features) >= 8
    one, three = (OnnxSpanModel(reader.model, reader.tokenizer, quantize=False, threads=n)
                  for n in (1, 3))
    single = features.subset([0])  # one batch: read by the session that uses every core
    for feats, size in ((features, 1), (features, 2), (features, None), (single, None)):
        expected = predict_logits(one, feats, pad_id=0, batch_size=size)
        got = predict_logits(three, feats, pad_id=0, batch_size=size)
        for e, g in zip([*expected[0], *expected[1]], [*got[0], *got[1]], strict=True):
            np.testing.assert_allclose(g, e, atol=1e-5)
    # Small batches by default, an explicit size kept, and no core left idle.
    assert three.batch_size(100, None) == WINDOWS_PER_RUN
    assert three.batch_size(100, 2) == 2 and three.batch_size(1000, 64) == 64
    assert three.batch_size(3, None) == 1 and one.batch_size(3, None) == 3


def test_int8_logits_stay_close_to_pytorch(readers):
    expected, fp32, int8 = (all_logits(readers[b]) for b in ("torch", "onnx", "onnx-int8"))
    assert len(expected) > 200  # every start and end logit of several windows
    spread = expected.std()
    assert np.abs(fp32 - expected).max() < 1e-3
    assert np.abs(int8 - expected).max() < 0.5 * spread
    assert np.corrcoef(expected, int8)[0, 1] > 0.9
    assert not np.array_equal(int8, fp32), "int8 must be another graph than fp32"
    graph = onnx.load(readers["onnx-int8"].runner.path).graph
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & {n.op_type for n in graph.node}


def test_the_export_cache_follows_the_weights_not_the_folder(tiny_model_no_dropout, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("SPANQA_ONNX_CACHE", str(tmp_path / "cache"))
    Reader.from_pretrained(tiny_model_no_dropout, config=CONFIG, device="cpu", backend="onnx")
    copy = shutil.copytree(tiny_model_no_dropout, tmp_path / "copy")
    Reader.from_pretrained(copy, config=CONFIG, device="cpu", backend="onnx")
    assert len(list((tmp_path / "cache").iterdir())) == 1


@pytest.mark.parametrize("compile_", [
    lambda model, tokenizer: OnnxSpanModel(model, tokenizer, quantize=False),
    pytest.param(lambda model, tokenizer: OpenVinoSpanModel(model, tokenizer, bf16=False),
                 marks=pytest.mark.skipif(not openvino_available(),
                                          reason="openvino not installed"))],
    ids=["onnx", "openvino"])
def test_segment_ids_are_exported_even_when_the_tokenizer_omits_them(readers, compile_):
    reader = readers["torch"]
    tokenizer = reader.tokenizer
    names = tokenizer.model_input_names
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    try:
        runner = compile_(reader.model, tokenizer)
    finally:
        tokenizer.model_input_names = names
    assert "token_type_ids" in runner.inputs


def test_unknown_or_misplaced_backends_are_refused():
    with pytest.raises(ValueError, match="reader backend must be"):
        resolve_backend("tensorrt", torch.device("cpu"))
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_backend("onnx", torch.device("cuda"))
    assert resolve_backend("auto", torch.device("cuda")) == "torch"


def test_an_export_that_differs_from_pytorch_falls_back_or_fails(
        tiny_model, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SPANQA_ONNX_CACHE", str(tmp_path))
    monkeypatch.setattr("spanqa.runtime.onnx.MAX_ERROR", -1.0)  # no export can pass
    with caplog.at_level(logging.WARNING):
        reader = Reader.from_pretrained(tiny_model, config=CONFIG, device="cpu",
                                        precision="fp32")
    assert reader.backend == "torch" and "reading with PyTorch instead" in caplog.text
    assert reader.answer(QUESTIONS[0], CONTEXTS[0])  # and it still reads
    notes = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert [p.suffix for p in notes] == [".failed"], "a failed export is never cached"
    # The next start does not export again to fail the same way; it says how to retry.
    monkeypatch.setattr("spanqa.runtime.onnx._export", None)
    with pytest.raises(RuntimeError, match=r"differs from PyTorch.*earlier export.*delete"):
        Reader.from_pretrained(tiny_model, config=CONFIG, backend="onnx")


def test_exports_unused_for_a_month_are_pruned(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SPANQA_ONNX_CACHE", str(tmp_path))
    old, recent = tmp_path / ("0" * 24), tmp_path / ("1" * 24)
    note, foreign = tmp_path / ("2" * 24 + ".failed"), tmp_path / "not-ours"
    for path in (old, recent):
        path.mkdir()
        (path / "model.onnx").write_bytes(b"")
    note.write_text("")
    foreign.write_text("")  # a shared folder may hold other things: never touched
    month = time.time() - 31 * 86400
    for path in (old, note, foreign):
        os.utime(path, (month, month))
    Reader.from_pretrained(tiny_model, config=CONFIG, device="cpu", backend="onnx")
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert len(left) == 3 and {recent.name, foreign.name} < set(left)
    assert old.name not in left and note.name not in left
    used = tmp_path / next(n for n in left if n not in (recent.name, foreign.name))
    os.utime(used, (month, month))  # using an export marks it as used
    Reader.from_pretrained(tiny_model, config=CONFIG, device="cpu", backend="onnx")
    assert used.stat().st_mtime > time.time() - 60


def test_an_unwritable_cache_falls_back_to_pytorch(tiny_model, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("SPANQA_ONNX_CACHE", str(blocker / "cache"))
    reader = Reader.from_pretrained(tiny_model, config=CONFIG, device="cpu", precision="fp32")
    assert reader.backend == "torch"
