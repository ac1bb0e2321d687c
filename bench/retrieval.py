"""Retrieval benchmark: SQuAD-open recall of bm25, dense and hybrid against plain rank-bm25.

    python bench/retrieval.py                 # full: 1,858 passages, 1,491 dev questions
    python bench/retrieval.py --limit 200     # quick look on the first 200 questions
    python bench/retrieval.py --tune --compare-torch --index data/bench/retrieval-index
                                              # what the README reports

Corpus: every paragraph of ../shared/squad/train-v1.1.json and dev-v1.1.json (1,858
passages), indexed with
SpanQA's own indexer (one document per article, each paragraph its own section, so the
chunker never merges paragraphs). A hit is a retrieved passage inside the question's gold
paragraph that contains a gold answer span. Writes bench/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402

from spanqa.index.records import Skipped  # noqa: E402
from spanqa.index.store import iter_passage_rows, open_db  # noqa: E402
from spanqa.index.text import (  # noqa: E402
    searchable_text,
    tokenize,
)
from spanqa.indexer.build import IndexConfig, update_index  # noqa: E402
from spanqa.indexer.formats import document_id, read_file  # noqa: E402
from spanqa.retriever.search import Fusion, Retriever, convex_fuse, rrf_fuse  # noqa: E402
from spanqa.runtime.embedder import Embedder  # noqa: E402

SQUAD = Path(os.environ.get("SPANQA_SQUAD_DIR", REPO.parent / "shared" / "squad"))
FILES = ("train-v1.1.json", "dev-v1.1.json")
DEPTHS = (1, 5, 20)


def gold_spans(path: Path) -> list[dict]:
    """Per dev question: its article's document id and answer spans in document offsets,
    taken from the indexer's own reading of the file (one section per paragraph)."""
    data = json.loads(path.read_text())["data"]
    documents = {d.id: d for d in read_file(path) if not isinstance(d, Skipped)}
    questions = []
    for article in data:
        doc = documents[document_id(path, article["title"])]
        for paragraph, section in zip(article["paragraphs"], doc.sections, strict=True):
            context = paragraph["context"]
            assert doc.text[section.start : section.end] == context, "offsets must line up"
            for qa in paragraph["qas"]:
                spans = [(section.start + a["answer_start"],
                          section.start + a["answer_start"] + len(a["text"]))
                         for a in qa["answers"]]
                questions.append({"question": qa["question"], "document_id": doc.id,
                                  "paragraph": (section.start, section.end), "answers": spans})
    return questions


def is_hit(q: dict, document: str, start: int, end: int) -> bool:
    lo, hi = q["paragraph"]
    return (document == q["document_id"] and lo <= start and end <= hi
            and any(start <= a and b <= end for a, b in q["answers"]))


def score(hits_per_q: list[list[tuple[str, int, int]]], questions: list[dict]) -> dict:
    recall = {k: 0 for k in DEPTHS}
    mrr = 0.0
    for hits, q in zip(hits_per_q, questions, strict=True):
        ranks = [r for r, (d, s, e) in enumerate(hits[:20], 1) if is_hit(q, d, s, e)]
        for k in DEPTHS:
            recall[k] += bool(ranks and ranks[0] <= k)
        mrr += 1 / ranks[0] if ranks else 0.0
    n = len(questions)
    return {**{f"recall@{k}": 100 * recall[k] / n for k in DEPTHS}, "mrr@20": 100 * mrr / n}


def tune_fusion(retriever: Retriever, passages: list[dict], train_file: Path) -> dict:
    """Grid over both fusions on the train questions (never the dev ones): the BM25 share
    of convex fusion, and the BM25 weight and k of reciprocal rank fusion."""
    questions = gold_spans(train_file)
    texts = [q["question"] for q in questions]
    queries = retriever.embed_questions(texts)
    candidates, scored = [], []
    for q, query in zip(texts, queries, strict=True):
        bm25 = retriever.bm25.scores(tokenize(q))
        found = (retriever.bm25.top_k_of(bm25, 100), retriever.dense_top_k(q, 100, query=query))
        rows = np.array(sorted({r for hits in found for r, _ in hits}), np.int64)
        candidates.append(found)
        scored.append((bm25[rows], retriever.dense_scores(rows, query), rows))

    def located(fused: list[tuple[int, float]]) -> list[tuple[str, int, int]]:
        return [(passages[row]["document_id"], passages[row]["start"], passages[row]["end"])
                for row, _ in fused[:20]]

    grid = []
    for share in (0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6):
        hits = [located(convex_fuse(bm25, cosine, rows, share)) for bm25, cosine, rows in scored]
        grid.append({"fusion": "convex", "bm25_share": share, **score(hits, questions)})
    for weight in (1.0, 1.5, 2.0):
        for k in (5, 20, 60):
            hits = [located(rrf_fuse({"bm25": bm25, "dense": dense},
                                     {"bm25": weight, "dense": 1.0}, k))
                    for bm25, dense in candidates]
            grid.append({"fusion": "rrf", "bm25_weight": weight, "rrf_k": k,
                         **score(hits, questions)})
    best = max(grid, key=lambda r: (r["recall@5"] + r["recall@1"], r["mrr@20"]))
    settings = {k: best[k] for k in ("bm25_share", "bm25_weight", "rrf_k") if k in best}
    return {"questions": len(questions), "grid": grid, "best": {"method": best["fusion"],
                                                                **settings}}


def embedding_speed(texts: list[str], backends: list[str], rounds: int = 3) -> dict:
    """Passages/s of plain `SentenceTransformer.encode` (its defaults) and of SpanQA's
    embedder in each backend on the same texts, all taking turns in each round; medians."""
    from sentence_transformers import SentenceTransformer

    from spanqa.runtime.embedder import resolve_embedder

    plain = SentenceTransformer(resolve_embedder("minilm"), device="cpu")
    encoders = {"sentence_transformers": lambda: plain.encode(texts, normalize_embeddings=True)}
    for backend in backends:
        ours = Embedder("minilm", backend=backend)
        if ours.backend in encoders:
            raise SystemExit(f"{backend} runs as {ours.backend}, which is timed already")
        encoders[ours.backend] = lambda ours=ours: ours.encode(texts)
    runs: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):
        for name, encode in encoders.items():
            began = time.perf_counter()
            encode()
            runs[name].append(len(texts) / (time.perf_counter() - began))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {"passages": len(texts), "rounds": rounds, "passages_per_s": medians,
            "runs": runs, "ratios": {name: medians[name] / medians["sentence_transformers"]
                                     for name in list(encoders)[1:]}}


def percentiles(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def build(index: Path, backend: str, sentence_words: int = IndexConfig.sentence_words) -> dict:
    """Build `index` unless it already holds this configuration."""
    if (index / "CURRENT").exists():
        config = Retriever(index).manifest["config"]
        if config["sentence_words"] == sentence_words and backend in ("auto", config["backend"]):
            return {}
    began = time.perf_counter()
    report = update_index(index, add=[SQUAD / f for f in FILES], rebuild=True,
                          config=IndexConfig(backend=backend, sentence_words=sentence_words))
    retriever = Retriever(index)
    return {"seconds": time.perf_counter() - began, "documents": report.documents,
            "passages": report.passages, "vectors": len(retriever.owners),
            "sentence_words": sentence_words, "backend": retriever.embedder_backend,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_modes(retriever: Retriever, questions: list[dict], modes: dict[str, str]) -> dict:
    results = {}
    for name, mode in modes.items():
        hits, times = [], []
        for q in questions:
            t = time.perf_counter()
            found = retriever.search(q["question"], top_k=20, mode=mode)
            times.append(time.perf_counter() - t)
            hits.append([(h.document_id, h.start, h.end) for h in found])
        results[name] = {**score(hits, questions), **percentiles(times)}
        print(name, json.dumps(results[name]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="first N dev questions only")
    parser.add_argument("--index", help="reuse (or keep) the index in this directory")
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    parser.add_argument("--backend", default="auto",
                        help="embedding backend of the index (auto: OpenVINO on a CPU)")
    parser.add_argument("--tune", action="store_true",
                        help="tune both fusions on the train questions")
    parser.add_argument("--compare-torch", action="store_true",
                        help="also build the index with PyTorch embeddings (INDEX-torch) and "
                             "compare recall: what quantisation costs")
    parser.add_argument("--compare-units", action="store_true",
                        help="also build the index with one vector per passage (INDEX-passage, "
                             "no sentence units) and compare recall: what sentence units add")
    parser.add_argument("--speed-passages", type=int, default=400,
                        help="passages in the side-by-side embedding speed test (0: skip)")
    parser.add_argument("--speed-backends", default="",
                        help="comma-separated embedding backends timed beside the index's own")
    parser.add_argument("--output", default="retrieval.json",
                        help="file name of the results, in --results")
    args = parser.parse_args()

    index = Path(args.index or tempfile.mkdtemp(prefix="spanqa-bench-"))
    results: dict = {}
    if built := build(index, args.backend):
        results["build"] = built
    questions = gold_spans(SQUAD / "dev-v1.1.json")
    if args.limit:
        questions = questions[: args.limit]
    retriever = Retriever(index)
    db = open_db(retriever.generation)
    passages = list(iter_passage_rows(db))
    results["corpus"] = {"passages": len(passages), "questions": len(questions),
                         "backend": retriever.embedder_backend}

    results |= run_modes(retriever, questions, {"bm25": "bm25", "dense": "dense",
                                                "hybrid": "hybrid"})
    rrf = Retriever(index, embedder=retriever.embedder, fusion=Fusion("rrf"))
    results |= run_modes(rrf, questions, {"hybrid_rrf": "hybrid"})

    if args.tune:
        results["fusion_tuning"] = tune_fusion(retriever, passages, SQUAD / "train-v1.1.json")
        best = results["fusion_tuning"]["best"]
        tuned = Retriever(index, embedder=retriever.embedder, fusion=Fusion(**best))
        results |= run_modes(tuned, questions, {"hybrid_tuned": "hybrid"})
        results["hybrid_tuned"] |= best

    if args.compare_torch:
        reference = index.with_name(index.name + "-torch")
        if built := build(reference, "torch"):
            results["build_torch"] = built
        unquantised = Retriever(reference)
        results["torch_index"] = run_modes(unquantised, questions,
                                           {"dense": "dense", "hybrid": "hybrid"})

    if args.compare_units:
        single = index.with_name(index.name + "-passage")
        if built := build(single, args.backend, sentence_words=0):
            results["build_passage"] = built
        one = Retriever(single, embedder=retriever.embedder, fusion=retriever.fusion)
        results["one_vector_per_passage"] = run_modes(one, questions,
                                                      {"dense": "dense", "hybrid": "hybrid"})

    if args.speed_passages:
        step = max(1, len(passages) // args.speed_passages)
        texts = [searchable_text(p["title"], p["text"]) for p in passages[::step]]
        others = [b for b in args.speed_backends.split(",") if b]
        results["embedding_speed"] = embedding_speed(
            texts[: args.speed_passages], [retriever.embedder_backend, *others])
        print("embedding_speed", json.dumps(results["embedding_speed"]), flush=True)

    baseline = BM25Okapi([p["text"].lower().split() for p in passages])
    hits, times = [], []
    for q in questions:
        t = time.perf_counter()
        scores = baseline.get_scores(q["question"].lower().split())
        top = np.argsort(-scores, kind="stable")[:20]
        times.append(time.perf_counter() - t)
        hits.append([(passages[i]["document_id"], passages[i]["start"], passages[i]["end"])
                     for i in top])
    results["rank_bm25_plain"] = {**score(hits, questions), **percentiles(times)}

    rows = ["mode              R@1    R@5   R@20  MRR@20   p50 ms  p95 ms"]
    for mode in ("rank_bm25_plain", "bm25", "dense", "hybrid", "hybrid_rrf", "hybrid_tuned"):
        if mode in results:
            rows.append(_row(mode, results[mode]))
    for mode, r in results.get("torch_index", {}).items():
        rows.append(_row(f"{mode} (torch)", r))
    for mode, r in results.get("one_vector_per_passage", {}).items():
        rows.append(_row(f"{mode} (1 vector)", r))
    for key in ("build", "build_torch", "build_passage"):
        if key in results:
            b = results[key]
            rows.append(f"{key}: {b['passages']} passages ({b['vectors']} vectors) in "
                        f"{b['seconds']:.0f} s "
                        f"({b['backend']}), peak RSS {b['peak_rss_mb']:.0f} MB")
    if "embedding_speed" in results:
        e = results["embedding_speed"]
        rows.append("embedding passages/s: " + ", ".join(
            f"{k} {v:.1f}" for k, v in e["passages_per_s"].items()) + " (" + ", ".join(
            f"{k} {v:.2f}x" for k, v in e["ratios"].items()) + ")")
    print("\n".join(rows))
    out = Path(args.results) / args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}; index in {index}")


def _row(name: str, r: dict) -> str:
    return (f"{name:<16} {r['recall@1']:5.1f}  {r['recall@5']:5.1f}  {r['recall@20']:5.1f}"
            f"  {r['mrr@20']:6.1f}  {r['p50_ms']:7.1f} {r['p95_ms']:7.1f}")


if __name__ == "__main__":
    main()
