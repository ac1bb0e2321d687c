"""End-to-end benchmark: open-domain SQuAD v1.1, SpanQA against Haystack, question by question.

    python bench/e2e.py                              # every dev question, depths 1, 5, 20
    python bench/e2e.py --limit 300                  # a seeded random sample of 300 questions
    python bench/e2e.py --limit 5 --depths 1,5       # smoke run
    python bench/e2e.py --systems spanqa,spanqa-bm25,haystack   # separate retrieval effects

Collection: the retrieval benchmark's (every paragraph of train-v1.1 and dev-v1.1, one
document per article, each paragraph its own section), indexed by SpanQA's own indexer and
cached in data/bench/retrieval-index. Each question is asked of the whole collection.

Systems, all reading with the same weights (the reader benchmark's same-wall-time reader,
data/bench/budget-v1.1, calibrated by `spanqa calibrate` on this index):
  spanqa        api.qa.QA, hybrid retrieval (BM25 + dense, score fusion), the default:
                adaptive reading (the calibration's first_read passages first, the rest
                of the depth only when no answer there reaches its early_stop confidence)
  spanqa-readall  the same reading every retrieved passage (adaptive=False)
  spanqa-bm25   the default with BM25 only (to tell retrieval from reading apart)
  spanqa-torch  the default with its reader run by PyTorch in fp32 instead of OpenVINO
  spanqa-torch-bf16  ... by PyTorch in bf16 (the default before OpenVINO, on bf16 CPUs)
  spanqa-onnx   ... by ONNX Runtime in fp32 (the default without OpenVINO, on other CPUs)
  spanqa-int8   ... by ONNX Runtime with int8 weights
  haystack      Haystack: InMemoryDocumentStore holding the same passages (same ids and
                texts), InMemoryBM25Retriever(top_k=depth) -> TransformersExtractiveReader
                (local directory, offline, top_k=1, no_answer=False, max_seq_length and
                stride from the checkpoint's feature_config), run as a Pipeline.

Every question is asked at every depth of every system in turn (the order of the systems
rotates from question to question), one question at a time, so the latencies are taken side
by side under the same load. EM/F1 are the official v1.1 script's (max over gold answers) on
each system's top answer; SpanQA is scored with its abstention threshold set to 0 so that its
top span always counts, and its abstention rate under the reader's own calibration is
reported beside it. "gold@k": share of questions with a retrieved passage inside the gold
paragraph holding a gold answer (bench/retrieval.py's hit). Writes bench/results/e2e.json.
"""

from __future__ import annotations

import os

# Before transformers / huggingface_hub / haystack are imported: they read these at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

import argparse
import dataclasses
import importlib.metadata
import json
import platform
import random
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.retrieval import FILES, SQUAD, gold_spans, is_hit  # noqa: E402
from spanqa.api.calibration import Calibration  # noqa: E402
from spanqa.api.qa import QA  # noqa: E402
from spanqa.index.store import iter_passage_rows, open_db  # noqa: E402
from spanqa.indexer.build import update_index  # noqa: E402
from spanqa.reader.checkpoint import read_meta, resolve_checkpoint  # noqa: E402
from spanqa.reader.features import FeatureConfig  # noqa: E402
from spanqa.reader.metrics import squad_v1  # noqa: E402
from spanqa.reader.reader import Reader  # noqa: E402
from spanqa.retriever.search import Retriever  # noqa: E402
from spanqa.runtime.embedder import Embedder  # noqa: E402

# Other reader backends, as (backend, precision), beside the default (OpenVINO on a CPU,
# in bf16 where it has bf16 units): PyTorch fp32 and bf16, ONNX Runtime fp32 and int8.
OTHER_BACKENDS = {"spanqa-torch": ("torch", "fp32"), "spanqa-torch-bf16": ("torch", "bf16"),
                  "spanqa-onnx": ("onnx", "fp32"), "spanqa-int8": ("onnx-int8", "fp32")}
OURS = ("spanqa", "spanqa-readall", "spanqa-bm25", *OTHER_BACKENDS)
SYSTEMS = (*OURS, "haystack")
DEFAULT_INDEX = REPO / "data" / "bench" / "retrieval-index"
DEFAULT_READER = REPO / "data" / "bench" / "budget-v1.1" / "best"
# What still differs between the two readers once their settings are matched (in the JSON).
DIFFERENCES = (
    "retrieval: SpanQA hybrid (its BM25 + MiniLM dense, score fusion) vs Haystack's "
    "InMemoryDocumentStore BM25 (BM25L, its default) over the same passages",
    "windows: both max_seq_length and stride from the checkpoint's feature_config; SpanQA "
    "cuts questions at max_query_length and windows the context only (only_second), Haystack "
    "tokenizes with truncation=True (longest_first): the same windows unless a question is "
    "longer than the context",
    "token_type_ids: SpanQA passes them (as in training); Haystack's reader passes only "
    "input_ids and attention_mask, so BERT sees segment 0 for the context too",
    "spans: SpanQA keeps n_best 20 start/end logits per window and answers of at most 30 "
    "tokens; Haystack scores every start<=end pair in the window (no length limit) and keeps "
    "answers_per_seq 20",
    "ranking across passages: both by start+end logit (Haystack's sigmoid(0.1 * (s + e)) is "
    "monotone in it); SpanQA adds retriever_weight * -log(rank) when its calibration has one",
    "batching: SpanQA sorts a question's windows by length and cuts them into batches where "
    "padding would cost more than another pass (at most 8 a batch with OpenVINO and fp32, 32 "
    "with PyTorch bf16); Haystack pads all of a question's windows to the longest "
    "(max_batch_size 32)",
    "Haystack runs as a Pipeline (retriever -> reader), which copies component inputs",
)
ALL_ANSWERS = 1_000_000  # top_k that returns every merged span (for the abstention check)
WARMUP_QUESTIONS = 2


# ----------------------------------------------------------------------------- data


def load_questions(path: Path) -> list[dict]:
    """bench/retrieval.py's questions (gold paragraph and answer spans in document offsets)
    with their SQuAD id and the raw `qas` entry the official metric needs."""
    questions = gold_spans(path)
    data = json.loads(path.read_text())["data"]
    qas = [qa for article in data for paragraph in article["paragraphs"]
           for qa in paragraph["qas"]]
    for q, qa in zip(questions, qas, strict=True):
        assert q["question"] == qa["question"], "gold_spans must keep the file's order"
        q["id"], q["qa"] = qa["id"], qa
    return questions


def sample(questions: list[dict], limit: int, seed: int) -> list[dict]:
    if not limit or limit >= len(questions):
        return questions
    return random.Random(seed).sample(questions, limit)


def ensure_index(index: Path, results: dict) -> None:
    """Build the retrieval benchmark's collection into `index` unless it is there already."""
    if (index / "CURRENT").exists():
        return
    began = time.perf_counter()
    report = update_index(index, add=[SQUAD / f for f in FILES], rebuild=True,
                          embedder=Embedder("minilm"))
    results["build"] = {"seconds": time.perf_counter() - began, "documents": report.documents,
                        "passages": report.passages}


def checkpoint_dir(reader: str | Path) -> Path:
    """The checkpoint folder a reader path means (a training run resolves to best/)."""
    path = Path(reader)
    if (path / "best").is_dir():
        path = path / "best"
    return resolve_checkpoint(path) or path


def score_answer(q: dict, prediction: str) -> tuple[float, float]:
    """Official v1.1 exact match and F1 (in percent) of one prediction."""
    s = squad_v1([{"paragraphs": [{"qas": [q["qa"]]}]}], {q["id"]: prediction})
    return s["exact_match"], s["f1"]


# ----------------------------------------------------------------------------- systems


@dataclasses.dataclass
class Outcome:
    answer: str  # "" when the system gave none
    retrieved: list[tuple[str, int, int]]  # (document id, start, end) of every passage read
    abstained: bool | None = None  # SpanQA under its own calibration; None: not applicable
    timing_ms: dict | None = None
    passages_read: int | None = None


class SpanQASystem:
    def __init__(self, qa: QA, mode: str, threshold: float):
        self.qa, self.mode, self.threshold = qa, mode, threshold

    def ask(self, question: str, depth: int) -> Outcome:
        # Every merged span comes back (slicing only): the top one is scored, and the
        # question counts as abstained when it misses the calibrated threshold (QA's rule).
        r = self.qa.ask(question, top_k=ALL_ANSWERS, retrieval_k=depth, mode=self.mode)
        return Outcome(
            answer=r.answers[0].text if r.answers else "",
            retrieved=[(h.document_id, h.start, h.end) for h in r.passages],
            abstained=not r.answers or r.answers[0].confidence < self.threshold,
            timing_ms={k: r.timing_ms[k] for k in ("retrieve", "read")},
            passages_read=r.passages_read)


class HaystackSystem:
    def __init__(self, passages: list[dict], reader_dir: Path, config: FeatureConfig,
                 batch_size: int, max_depth: int):
        from haystack import Document, Pipeline
        from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
        from haystack.document_stores.in_memory import InMemoryDocumentStore
        from haystack_integrations.components.readers.transformers import (
            TransformersExtractiveReader,
        )

        began = time.perf_counter()
        store = InMemoryDocumentStore()
        store.write_documents([
            Document(id=p["id"], content=p["text"],
                     meta={"document_id": p["document_id"], "start": int(p["start"]),
                           "end": int(p["end"]), "title": p["title"]})
            for p in passages])
        self.documents = store.count_documents()
        self.settings = {"max_seq_length": config.max_seq_length, "stride": config.doc_stride,
                         "max_batch_size": batch_size, "top_k": 1, "no_answer": False,
                         "answers_per_seq": 20}
        pipe = Pipeline()
        pipe.add_component("retriever", InMemoryBM25Retriever(store, top_k=max_depth))
        pipe.add_component("reader", TransformersExtractiveReader(
            model=str(reader_dir), **self.settings))
        pipe.connect("retriever.documents", "reader.documents")
        pipe.warm_up()
        self.pipe = pipe
        self.setup_seconds = time.perf_counter() - began

    def ask(self, question: str, depth: int) -> Outcome:
        out = self.pipe.run({"retriever": {"query": question, "top_k": depth},
                             "reader": {"query": question}},
                            include_outputs_from={"retriever"})
        answers = [a for a in out["reader"]["answers"] if a.data is not None]
        docs = out["retriever"]["documents"]
        return Outcome(
            answer=answers[0].data if answers else "",
            retrieved=[(d.meta["document_id"], d.meta["start"], d.meta["end"]) for d in docs])


# ----------------------------------------------------------------------------- report


def summarise(records: list[dict]) -> dict:
    ms = np.array([r["seconds"] for r in records]) * 1000
    out = {
        "questions": len(records),
        "em": float(np.mean([r["em"] for r in records])),
        "f1": float(np.mean([r["f1"] for r in records])),
        "gold_retrieved": 100 * float(np.mean([r["hit"] for r in records])),
        "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
    }
    abstained = [r for r in records if r.get("abstained") is not None]
    if abstained:
        answered = [r for r in abstained if not r["abstained"]]
        out["abstain_rate"] = 100 * sum(r["abstained"] for r in abstained) / len(abstained)
        out["em_answered"] = (float(np.mean([r["em"] for r in answered]))
                              if answered else None)
        for part in ("retrieve", "read"):
            out[f"{part}_p50_ms"] = float(np.median([r["timing_ms"][part] for r in records]))
        out["passages_read_mean"] = float(np.mean([r["passages_read"] for r in records]))
    return out


def compare(results: dict, peer: str, ours: str, depths: list[int]) -> dict:
    out = {}
    for k in depths:
        a, b = results["systems"][peer][str(k)], results["systems"][ours][str(k)]
        out[str(k)] = {"em_points": a["em"] - b["em"], "f1_points": a["f1"] - b["f1"],
                       "gold_retrieved_points": a["gold_retrieved"] - b["gold_retrieved"],
                       "p50_ratio": a["p50_ms"] / b["p50_ms"],
                       "p95_ratio": a["p95_ms"] / b["p95_ms"]}
    return out


def table(results: dict, systems: list[str], depths: list[int]) -> str:
    rows = ["system         depth     EM     F1  gold@k  abstain  EM(ans)   p50 ms   p95 ms"]
    for k in depths:
        for name in systems:
            r = results["systems"][name][str(k)]
            abstain = f"{r['abstain_rate']:6.1f}%" if "abstain_rate" in r else "      -"
            em_ans = (f"{r['em_answered']:7.1f}" if r.get("em_answered") is not None
                      else "      -")
            rows.append(f"{name:<14} {k:4d} {r['em']:6.1f} {r['f1']:6.1f} "
                        f"{r['gold_retrieved']:6.1f}  {abstain}  {em_ans} "
                        f"{r['p50_ms']:8.1f} {r['p95_ms']:8.1f}")
    for key, c in results.get("comparison", {}).items():
        peer, ours = key.split("_vs_")
        for k, d in c.items():
            rows.append(f"{peer} vs {ours} @ {k}: EM {d['em_points']:+.1f} pts, "
                        f"F1 {d['f1_points']:+.1f} pts, gold@k "
                        f"{d['gold_retrieved_points']:+.1f} pts, latency p50 x"
                        f"{d['p50_ratio']:.2f}, p95 x{d['p95_ratio']:.2f}")
    return "\n".join(rows)


def versions() -> dict:
    out = {"python": platform.python_version(), "torch_threads": torch.get_num_threads()}
    for package in ("torch", "transformers", "haystack-ai", "transformers-haystack"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=0,
                        help="a seeded random sample of N dev questions (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the question sample")
    parser.add_argument("--depths", default="1,5,20", help="retrieval depths (passages read)")
    parser.add_argument("--systems", default="spanqa,spanqa-readall,haystack",
                        help=f"comma-separated, from {', '.join(SYSTEMS)}")
    parser.add_argument("--index", default=str(DEFAULT_INDEX),
                        help="the retrieval benchmark's index (built here when missing)")
    parser.add_argument("--reader", default=str(DEFAULT_READER),
                        help="reader checkpoint (or training run) directory")
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    args = parser.parse_args()

    depths = sorted({int(d) for d in args.depths.split(",")})
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown system(s) {', '.join(sorted(unknown))}; pick from {SYSTEMS}")

    results: dict = {"config": {"limit": args.limit, "seed": args.seed, "depths": depths,
                                "systems": systems, "index": args.index,
                                "reader": args.reader},
                     "versions": versions()}
    index = Path(args.index)
    ensure_index(index, results)
    reader_dir = checkpoint_dir(args.reader)
    feature_config = FeatureConfig(**(read_meta(reader_dir).get("feature_config") or {}))
    questions = sample(load_questions(SQUAD / "dev-v1.1.json"), args.limit, args.seed)

    began = time.perf_counter()
    retriever = Retriever(index)
    passages = list(iter_passage_rows(open_db(retriever.generation)))
    reader = Reader.from_pretrained(reader_dir)
    own = Calibration.load(reader_dir)
    qa = QA(retriever, reader, calibration=dataclasses.replace(own, threshold=0.0),
            max_passages_shown=max(depths))
    qa_read_all = QA(retriever, reader, calibration=qa.calibration,
                     max_passages_shown=max(depths), adaptive=False)
    spanqa_setup = time.perf_counter() - began
    # What the figures depend on beyond the command line: the index and the calibration.
    results["config"] |= {"index_config": retriever.manifest["config"],
                          "vectors": len(retriever.owners),
                          "fusion": dataclasses.asdict(retriever.fusion),
                          "calibration": dataclasses.asdict(own)}
    runners: dict = {}
    for name in systems:
        if name == "spanqa":
            runners[name] = SpanQASystem(qa, "hybrid", own.threshold)
        elif name == "spanqa-readall":
            runners[name] = SpanQASystem(qa_read_all, "hybrid", own.threshold)
        elif name == "spanqa-bm25":
            runners[name] = SpanQASystem(qa, "bm25", own.threshold)
        elif name in OTHER_BACKENDS:
            backend, precision = OTHER_BACKENDS[name]
            other = Reader.from_pretrained(reader_dir, backend=backend, precision=precision)
            runners[name] = SpanQASystem(
                QA(retriever, other, calibration=qa.calibration,
                   max_passages_shown=max(depths)), "hybrid", own.threshold)
        else:
            runners[name] = HaystackSystem(passages, reader_dir, feature_config,
                                           reader.batch_size, max(depths))
    results["corpus"] = {"passages": len(passages), "dev_questions_asked": len(questions)}
    results["settings"] = {
        "spanqa": {"max_seq_length": feature_config.max_seq_length,
                   "doc_stride": feature_config.doc_stride,
                   "max_query_length": feature_config.max_query_length,
                   "reader_backend": reader.backend,
                   "reader_dtype": reader.dtype_name,
                   "batch_size": reader.batch_size, "n_best": reader.n_best,
                   "max_answer_length": reader.max_answer_length,
                   "calibration": dataclasses.asdict(own), "setup_seconds": spanqa_setup},
    }
    if "haystack" in runners:
        h = runners["haystack"]
        results["settings"]["haystack"] = {**h.settings, "documents": h.documents,
                                           "setup_seconds": h.setup_seconds}
        results["differences"] = list(DIFFERENCES)

    # Warm-up (not counted): first-call allocations, lazy loads (the dense encoder).
    for q in questions[:WARMUP_QUESTIONS]:
        for runner in runners.values():
            runner.ask(q["question"], max(depths))

    records: dict[str, dict[int, list[dict]]] = {s: {k: [] for k in depths} for s in systems}
    began = time.perf_counter()
    for i, q in enumerate(questions):
        order = systems[i % len(systems):] + systems[: i % len(systems)]
        for k in depths:
            for name in order:
                t = time.perf_counter()
                outcome = runners[name].ask(q["question"], k)
                seconds = time.perf_counter() - t
                em, f1 = score_answer(q, outcome.answer)
                records[name][k].append({
                    "seconds": seconds, "em": em, "f1": f1,
                    "hit": any(is_hit(q, *r) for r in outcome.retrieved),
                    "abstained": outcome.abstained, "timing_ms": outcome.timing_ms,
                    "passages_read": outcome.passages_read})
        if (i + 1) % 25 == 0 or i + 1 == len(questions):
            print(f"{i + 1}/{len(questions)} questions, {time.perf_counter() - began:.0f} s",
                  flush=True)

    results["systems"] = {s: {str(k): summarise(records[s][k]) for k in depths}
                          for s in systems}
    results["comparison"] = {}
    if "haystack" in systems:
        for ours in OURS:
            if ours in systems:
                results["comparison"][f"haystack_vs_{ours}"] = compare(
                    results, "haystack", ours, depths)
    results["wall_seconds"] = time.perf_counter() - began
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["question_ids"] = [q["id"] for q in questions]
    results["records"] = {s: {str(k): [{"em": r["em"], "f1": r["f1"], "hit": r["hit"],
                                        "ms": round(r["seconds"] * 1000, 1),
                                        "abstained": r["abstained"],
                                        "passages_read": r["passages_read"]}
                                       for r in records[s][k]] for k in depths}
                          for s in systems}
    print(table(results, systems, depths))
    out = Path(args.results) / "e2e.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
