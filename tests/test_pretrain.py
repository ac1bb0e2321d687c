"""Span masking statistics, SBO targets and head, block packing, and `spanqa pretrain`."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from spanqa.pretrain.batches import Specials, collate, count_sbo_targets, mask_block
from spanqa.pretrain.config import PretrainConfig
from spanqa.pretrain.corpus import (
    Block,
    build_blocks,
    pack_document,
    read_paragraphs,
    unigram_counts,
)
from spanqa.pretrain.masking import (
    IGNORE,
    MaskingConfig,
    UnigramSampler,
    choose_spans,
    mask_spans,
    mask_tokens,
    merge_spans,
    span_length_distribution,
)
from spanqa.pretrain.model import SpanBoundaryHead
from spanqa.pretrain.train import pretrain

REPO = Path(__file__).resolve().parents[1]
MASK = 103


def _real_blocks(tokenizer, squad_dir: Path, max_length: int = 128) -> list[Block]:
    return build_blocks(tokenizer, [squad_dir / "sample-v1.1.json"], max_length, progress=False)


def _word_ends(word_starts: np.ndarray) -> np.ndarray:
    """True where a token ends a word (the next token starts one, or the block ends)."""
    return np.append(word_starts[1:], True)


def test_span_lengths_follow_the_clipped_geometric_distribution():
    lengths, probs = span_length_distribution(0.2, 10)
    assert float((lengths * probs).sum()) == pytest.approx(3.8, abs=0.01)  # "about 3.8"
    # The first span drawn in a block of one-token words is never cut by an earlier one.
    rng = np.random.default_rng(0)
    words = np.ones(500, dtype=bool)
    firsts = []
    for _ in range(4000):
        _, spans = choose_spans(words, 10, rng)  # room for one span of any length
        firsts.append(spans[0][1] - spans[0][0])
    counts = np.bincount(firsts, minlength=11)[1:]
    assert counts.sum() == 4000 and max(firsts) <= 10
    expected = probs * 4000
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # 9 degrees of freedom, p = 0.001
    assert np.mean(firsts) == pytest.approx(3.8, abs=0.15)


def test_span_masking_hides_fifteen_percent_in_whole_words(minilm_tokenizer, squad_dir):
    blocks = _real_blocks(minilm_tokenizer, squad_dir)
    sampler = UnigramSampler(unigram_counts(blocks, len(minilm_tokenizer)))
    hidden_total = tokens_total = 0
    for seed in range(30):
        for i, block in enumerate(blocks):
            m = mask_spans(block.ids, block.word_starts, np.random.default_rng([seed, i]), MASK,
                           sampler)
            n, hidden = len(block.ids), m.labels != IGNORE
            starts = np.flatnonzero(block.word_starts)
            longest_word = int(np.diff(np.append(starts, n)).max())
            # At least the budget, overshooting it by less than the last word added.
            assert math.ceil(0.15 * n) <= hidden.sum() < math.ceil(0.15 * n) + longest_word
            hidden_total, tokens_total = hidden_total + hidden.sum(), tokens_total + n
            # Whole words: a word is either all hidden or all shown.
            word_of = np.cumsum(block.word_starts) - 1
            for w in np.unique(word_of[hidden]):
                assert hidden[word_of == w].all()
            # Merged spans: sorted, neither overlapping nor touching, covering the hidden tokens.
            covered = np.zeros(n, dtype=bool)
            for (s, e), nxt in zip(m.spans, [*m.spans[1:], None], strict=True):
                assert block.word_starts[s] and _word_ends(block.word_starts)[e - 1]
                assert nxt is None or nxt[0] > e
                covered[s:e] = True
            assert np.array_equal(covered, hidden)
            assert np.array_equal(m.labels[hidden], block.ids[hidden])
            assert np.array_equal(m.input_ids[~hidden], block.ids[~hidden])
    assert 0.15 <= hidden_total / tokens_total < 0.16  # of all subword tokens


def test_spans_are_shown_as_mask_random_or_unchanged_80_10_10():
    rng = np.random.default_rng(1)
    vocab = 20_000
    counts = np.ones(vocab, dtype=np.int64)  # uniform: coincidences are negligible
    counts[MASK] = 0
    sampler = UnigramSampler(counts)
    kinds = {"mask": 0, "random": 0, "same": 0}
    for _ in range(1000):
        ids = rng.integers(1000, vocab, size=120)
        words = rng.random(120) < 0.7
        words[0] = True
        m = mask_spans(ids, words, rng, MASK, sampler)
        for s, e in m.spans:
            shown, original = m.input_ids[s:e], ids[s:e]
            if (shown == MASK).all():
                kinds["mask"] += 1
            elif np.array_equal(shown, original):
                kinds["same"] += 1
            else:
                assert (shown != MASK).all()  # a span is shown one way, never mixed
                kinds["random"] += 1
    total = sum(kinds.values())
    assert total > 3000
    assert kinds["mask"] / total == pytest.approx(0.8, abs=0.025)
    assert kinds["random"] / total == pytest.approx(0.1, abs=0.02)
    assert kinds["same"] / total == pytest.approx(0.1, abs=0.02)


def test_random_replacements_follow_the_corpus_unigram_distribution():
    sampler = UnigramSampler(np.array([0, 1, 3, 6, 0], dtype=np.int64))
    draws = sampler.draw(np.random.default_rng(0), 60_000)
    freq = np.bincount(draws, minlength=5) / len(draws)
    assert freq[0] == 0 and freq[4] == 0
    assert freq[1:4] == pytest.approx([0.1, 0.3, 0.6], abs=0.01)


def test_token_masking_is_the_same_budget_one_token_at_a_time():
    rng = np.random.default_rng(2)
    sampler = UnigramSampler(np.ones(20_000, dtype=np.int64))
    kinds = np.zeros(3)
    for _ in range(300):
        ids = rng.integers(1000, 20_000, size=200)
        m = mask_tokens(ids, rng, MASK, sampler)
        hidden = m.labels != IGNORE
        assert hidden.sum() == 30 and len(m.spans) == 30
        shown = m.input_ids[hidden]
        kinds += [(shown == MASK).sum(), ((shown != MASK) & (shown != ids[hidden])).sum(),
                  (shown == ids[hidden]).sum()]
    assert kinds / kinds.sum() == pytest.approx([0.8, 0.1, 0.1], abs=0.015)


def test_merging_joins_overlapping_and_touching_spans():
    assert merge_spans([(5, 8), (0, 2), (2, 4), (7, 9), (12, 13)]) == [(0, 4), (5, 9), (12, 13)]


def test_sbo_targets_sit_between_unmasked_boundaries(minilm_tokenizer, squad_dir):
    blocks = _real_blocks(minilm_tokenizer, squad_dir)[:16]
    sampler = UnigramSampler(unigram_counts(blocks, len(minilm_tokenizer)))
    t = minilm_tokenizer
    specials = Specials(t.cls_token_id, t.sep_token_id, t.pad_token_id, t.mask_token_id)
    masked = [mask_block(b, i, 0, 0, "span", specials, sampler, MaskingConfig())
              for i, b in enumerate(blocks)]
    batch = collate(masked, specials, sbo_max_positions=30)
    labels, ids = batch["labels"], batch["input_ids"]
    assert (ids[:, 0] == t.cls_token_id).all()
    targets = len(batch["sbo_target"])
    assert 0 < targets == count_sbo_targets(masked, 30) <= (labels != IGNORE).sum()
    for row, left, right, pos, target in zip(*(batch[k] for k in (
            "sbo_row", "sbo_left", "sbo_right", "sbo_position", "sbo_target")), strict=True):
        assert labels[row, left] == IGNORE and labels[row, right] == IGNORE
        assert (labels[row, left + 1:right] != IGNORE).all()
        assert labels[row, left + 1 + pos] == target
        # Both boundaries are block content, never [CLS], [SEP] or padding (the reference
        # leaves spans at the block's edges to the MLM loss).
        assert ids[row, left] not in (t.cls_token_id, t.sep_token_id, t.pad_token_id)
        assert ids[row, right] not in (t.cls_token_id, t.sep_token_id, t.pad_token_id)
    edge = [(i, s, e) for i, m in enumerate(masked) for s, e in m.spans
            if s == 0 or e == len(m.input_ids)]
    for i, s, e in edge:  # still masked for the MLM loss, just not SBO targets
        assert (labels[i, s + 1:e + 1] != IGNORE).all()


def test_the_pretrainer_ties_both_heads_to_the_word_embeddings(tiny_model_no_dropout):
    from spanqa.pretrain.model import SpanBertPretrainer, load_mlm_model

    model = SpanBertPretrainer(load_mlm_model(str(tiny_model_no_dropout)))
    embeddings = model.mlm.get_input_embeddings().weight
    assert model.mlm.get_output_embeddings().weight is embeddings
    batch = {"input_ids": torch.tensor([[101, 2023, 103, 103, 2003, 102]]),
             "attention_mask": torch.ones(1, 6, dtype=torch.long),
             "labels": torch.tensor([[IGNORE, IGNORE, 2742, 3793, IGNORE, IGNORE]]),
             "sbo_row": torch.tensor([0, 0]), "sbo_left": torch.tensor([1, 1]),
             "sbo_right": torch.tensor([4, 4]), "sbo_position": torch.tensor([0, 1]),
             "sbo_target": torch.tensor([2742, 3793])}
    out = model(batch)
    assert out["mlm_targets"] == 2 and out["sbo_targets"] == 2
    out["sbo_loss"].backward()  # the SBO loss alone reaches the word embeddings
    assert embeddings.grad[[2742, 3793]].abs().sum() > 0
    assert model.sbo.layer_norm1.weight.grad is not None


def test_sbo_head_predicts_through_the_tied_word_embeddings():
    torch.manual_seed(0)
    head = SpanBoundaryHead(hidden_size=16, vocab_size=50, max_positions=4, position_size=8)
    embeddings = torch.nn.Parameter(torch.randn(50, 16))
    hidden = torch.randn(2, 7, 16)
    args = (torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([4, 6]), torch.tensor([0, 3]))
    logits = head(hidden, embeddings, *args)
    assert logits.shape == (2, 50)
    torch.nn.functional.cross_entropy(logits, torch.tensor([3, 9])).backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0
    # Boundary outputs matter; the tokens between them do not.
    hidden2 = hidden.clone()
    hidden2[0, 2:4] += 5
    assert torch.allclose(head(hidden2, embeddings, *args), logits)
    hidden2[0, 4] += 1
    assert not torch.allclose(head(hidden2, embeddings, *args), logits)


def test_packing_keeps_every_token_in_order_and_cuts_at_word_starts(minilm_tokenizer):
    paragraphs = ["Short first paragraph.", "word " * 300, "Übermäßig lange Wörter " * 40,
                  "Last one."]
    blocks = pack_document(minilm_tokenizer, "doc", paragraphs, max_length=64)
    expected = [i for p in paragraphs
                for i in minilm_tokenizer(p, add_special_tokens=False)["input_ids"]]
    assert [i for b in blocks for i in b.ids.tolist()] == expected
    assert all(len(b.ids) <= 62 and b.word_starts[0] for b in blocks)
    assert all(len(b.ids) >= 55 for b in blocks[:-1])  # full but for the cut at a word start


def test_index_text_is_read_back_without_the_chunkers_overlaps(tmp_path, minilm_tokenizer):
    from spanqa.indexer.build import IndexConfig, update_index
    from spanqa.runtime.embedder import Embedder

    sentences = [f"Sentence number {i} tells about topic {i % 7}." for i in range(120)]
    text = " ".join(sentences)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "long.txt").write_text(text)
    (tmp_path / "docs" / "other.txt").write_text("A second, short document.")
    update_index(tmp_path / "idx", add=[tmp_path / "docs"], rebuild=True, progress=False,
                 config=IndexConfig(words=60, overlap=20), embedder=Embedder("minilm"))
    documents = dict(read_paragraphs([tmp_path / "idx"]))
    assert len(documents) == 2
    long = next(p for p in documents.values() if len(p) > 1)
    assert "".join(long).split() == text.split()  # every word once, in order
    blocks = build_blocks(minilm_tokenizer, [tmp_path / "idx"], 64, progress=False)
    assert len({b.document for b in blocks}) == 2


def _tiny_mlm(tmp_path_factory_path: Path) -> Path:
    from tests.conftest import make_tiny_model

    return make_tiny_model(tmp_path_factory_path, dropout=0.1, seed=3)


def _cfg(squad_dir: Path, model: Path, out: Path, **kw) -> PretrainConfig:
    base = dict(text=[str(squad_dir / "sample-v1.1.json")], out=str(out), model=str(model),
                max_seq_length=64, batch_size=8, lr=2e-3, epochs=1, max_steps=0,
                evals_per_epoch=1, held_out=0.1, progress=False, log_every=1)
    return PretrainConfig(**{**base, **kw})


def _cli(cfg: PretrainConfig) -> list[str]:
    return ["pretrain", "--text", *cfg.text, "--out", cfg.out, "--model", cfg.model,
            "--max-seq-length", str(cfg.max_seq_length), "--batch-size", str(cfg.batch_size),
            "--lr", str(cfg.lr), "--epochs", str(cfg.epochs), "--evals-per-epoch",
            str(cfg.evals_per_epoch), "--held-out", str(cfg.held_out), "--log-every", "1",
            "--save-steps", str(cfg.save_steps), "--no-progress"]


def test_pretraining_lowers_the_held_out_loss_and_the_encoder_fine_tunes(
        squad_dir, tmp_path):
    model = _tiny_mlm(tmp_path / "tiny")
    cfg = _cfg(squad_dir, model, tmp_path / "run", epochs=10, lr=1e-2, log_every=5)
    summary = pretrain(cfg)
    run = tmp_path / "run"
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "eval"]
    assert len(evals) >= 4 and {"mlm_loss", "sbo_loss", "loss"} <= evals[0].keys()
    assert evals[-1]["loss"] < evals[0]["loss"] - 1.0
    assert (run / "curves.png").is_file() and (run / "encoder" / "model.safetensors").is_file()
    assert summary["tokens_seen"] > 0 and summary["approx_train_flops"] > 0
    # The output is an ordinary encoder for the reader: two fine-tuning steps on it.
    result = subprocess.run(
        [sys.executable, "-m", "spanqa.api.cli", "reader", "train", "--train",
         str(squad_dir / "sample-v1.1.json"), "--model", str(run / "encoder"), "--out",
         str(tmp_path / "reader"), "--max-steps", "2", "--batch-size", "4",
         "--max-seq-length", "128", "--doc-stride", "32", "--max-query-length", "32",
         "--no-progress"],
        cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    reader = load_file(str(tmp_path / "reader" / "best" / "model.safetensors"))
    encoder = load_file(str(run / "encoder" / "model.safetensors"))
    original = load_file(str(model / "model.safetensors"))
    assert "qa_outputs.weight" in reader
    # Fine-tuning started from the pretrained encoder, not from the original weights.
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert (reader[name] - encoder[name]).norm() < (reader[name] - original[name]).norm() / 5


def test_token_masking_ablation_trains_without_the_sbo_head(squad_dir, tmp_path):
    model = _tiny_mlm(tmp_path / "tiny")
    summary = pretrain(_cfg(squad_dir, model, tmp_path / "run", masking="token", sbo=False,
                            max_steps=3))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
               .splitlines()]
    assert summary["steps"] == 3
    assert all("sbo_loss" not in r for r in records)


def test_a_killed_pretraining_run_resumes_to_the_uninterrupted_result(squad_dir, tmp_path):
    model = _tiny_mlm(tmp_path / "tiny")
    common = dict(epochs=2, save_steps=1, evals_per_epoch=1)
    torch.set_num_threads(1)
    try:
        pretrain(_cfg(squad_dir, model, tmp_path / "whole", **common))
        killed = _cfg(squad_dir, model, tmp_path / "killed", **common)
        proc = subprocess.Popen([sys.executable, "-m", "spanqa.api.cli", *_cli(killed)], cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO),
                                     "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        meta = tmp_path / "killed" / "last" / "spanqa.json"
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if meta.is_file() and json.loads(meta.read_text() or "{}").get("step", 0) >= 3:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        killed.resume = True
        pretrain(killed)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    whole = load_file(str(tmp_path / "whole" / "encoder" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "killed" / "encoder" / "model.safetensors"))
    for name, tensor in whole.items():
        assert torch.equal(tensor, resumed[name]), name
    losses = [[r["loss"] for r in map(json.loads, (tmp_path / run / "metrics.jsonl")
                                      .read_text().splitlines()) if r["type"] == "train"]
              for run in ("whole", "killed")]
    assert losses[0] == losses[1]


def test_pretrain_refuses_an_empty_corpus(tmp_path):
    (tmp_path / "empty").mkdir()
    result = subprocess.run([sys.executable, "-m", "spanqa.api.cli", "pretrain", "--text",
                             str(tmp_path / "empty"), "--out", str(tmp_path / "out"),
                             "--no-progress"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and "no text to pretrain on" in result.stderr


def test_accumulated_chunks_give_the_gradient_of_the_whole_batch(minilm_tokenizer, squad_dir,
                                                                  tiny_model_no_dropout):
    """Losses are sums normalised by the whole step's target counts, so chunks add up."""
    from spanqa.pretrain.model import SpanBertPretrainer, load_mlm_model
    from spanqa.pretrain.train import _loss

    blocks = _real_blocks(minilm_tokenizer, squad_dir, max_length=64)[:6]
    t = minilm_tokenizer
    specials = Specials(t.cls_token_id, t.sep_token_id, t.pad_token_id, t.mask_token_id)
    sampler = UnigramSampler(unigram_counts(blocks, len(t)))
    masked = [mask_block(b, i, 0, 0, "span", specials, sampler, MaskingConfig())
              for i, b in enumerate(blocks)]
    mlm_n = int(sum((m.labels != IGNORE).sum() for m in masked))
    sbo_n = count_sbo_targets(masked, 30)
    torch.manual_seed(0)
    model = SpanBertPretrainer(load_mlm_model(str(tiny_model_no_dropout)))
    grads = []
    for chunks in ([masked], [masked[:2], masked[2:]]):
        model.zero_grad()
        for chunk in chunks:
            _loss(model(collate(chunk, specials, 30)), mlm_n, sbo_n).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], rtol=1e-4, atol=1e-7), name


def test_token_masking_with_sbo_is_refused(squad_dir, tmp_path, tiny_model_no_dropout):
    with pytest.raises(ValueError, match="needs span masking"):
        pretrain(_cfg(squad_dir, tiny_model_no_dropout, tmp_path / "run", masking="token",
                      sbo=True))


def test_head_steps_train_the_new_heads_with_the_encoder_frozen(squad_dir, tmp_path):
    model = _tiny_mlm(tmp_path / "tiny")  # a QA checkpoint: its MLM and SBO heads are new
    pretrain(_cfg(squad_dir, model, tmp_path / "frozen", max_steps=2, head_steps=2))
    pretrain(_cfg(squad_dir, model, tmp_path / "moved", max_steps=2))
    original = load_file(str(model / "model.safetensors"))
    frozen, moved = (load_file(str(tmp_path / run / "encoder" / "model.safetensors"))
                     for run in ("frozen", "moved"))
    encoder = [n for n in original if n.startswith("bert.")]
    assert encoder and all(torch.equal(frozen[n], original[n]) for n in encoder)
    assert any(not torch.equal(moved[n], original[n]) for n in encoder)
    assert frozen["cls.predictions.bias"].abs().sum() > 0  # starts at zero: the head learned
    # After the head steps the encoder trains again.
    pretrain(_cfg(squad_dir, model, tmp_path / "then", max_steps=3, head_steps=2))
    then = load_file(str(tmp_path / "then" / "encoder" / "model.safetensors"))
    assert any(not torch.equal(then[n], original[n]) for n in encoder)
