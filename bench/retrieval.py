"""Retrieval benchmark: SQuAD-open recall of bm25, dense and hybrid against plain rank-bm25.

    python bench/retrieval.py                 # full: 1,726 paragraphs, 1,491 dev questions
    python bench/retrieval.py --limit 200     # quick look on the first 200 questions

Corpus: every paragraph of ../shared/squad/train-v1.1.json and dev-v1.1.json, indexed with
SpanQA's own indexer (one document per article, each paragraph its own section, so the
chunker never merges paragraphs). A hit is a retrieved passage inside the question's gold
paragraph that contains a gold answer span. Writes bench/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402

from indexer.build import update_index  # noqa: E402
from indexer.embedding import Embedder  # noqa: E402
from indexer.readers import document_id, read_file  # noqa: E402
from indexer.records import Skipped  # noqa: E402
from indexer.store import iter_passage_rows, open_db  # noqa: E402
from retriever.search import Retriever, rrf_fuse  # noqa: E402

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
    """Grid over bm25 weight and rrf k on the train questions (never the dev ones)."""
    questions = gold_spans(train_file)
    lists = [{"bm25": retriever.bm25_top_k(q["question"], 100),
              "dense": retriever.dense_top_k(q["question"], 100)} for q in questions]
    grid = []
    for weight in (1.0, 1.25, 1.5, 2.0, 3.0):
        for k in (5, 10, 20, 40, 60, 100):
            hits = [[(passages[row]["document_id"], passages[row]["start"], passages[row]["end"])
                     for row, _ in rrf_fuse(found, {"bm25": weight, "dense": 1.0}, k)[:20]]
                    for found in lists]
            grid.append({"bm25_weight": weight, "rrf_k": k, **score(hits, questions)})
    best = max(grid, key=lambda r: (r["recall@5"] + r["recall@1"], r["mrr@20"]))
    return {"questions": len(questions), "grid": grid,
            "best": {"bm25_weight": best["bm25_weight"], "rrf_k": best["rrf_k"]}}


def percentiles(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="first N dev questions only")
    parser.add_argument("--index", help="reuse (or keep) the index in this directory")
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    parser.add_argument("--tune", action="store_true",
                        help="tune the fusion (bm25 weight, rrf k) on the train questions")
    args = parser.parse_args()

    index = Path(args.index or tempfile.mkdtemp(prefix="spanqa-bench-"))
    embedder = Embedder("minilm")
    results: dict = {}
    if not (index / "CURRENT").exists():
        began = time.perf_counter()
        report = update_index(index, add=[SQUAD / f for f in FILES], rebuild=True,
                              embedder=embedder)
        results["build"] = {"seconds": time.perf_counter() - began, "documents": report.documents,
                            "passages": report.passages,
                            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                            / 1024}
    questions = gold_spans(SQUAD / "dev-v1.1.json")
    if args.limit:
        questions = questions[: args.limit]
    retriever = Retriever(index, embedder=embedder)
    db = open_db(retriever.generation)
    passages = list(iter_passage_rows(db))
    results["corpus"] = {"passages": len(passages), "questions": len(questions)}

    for mode in ("bm25", "dense", "hybrid"):
        hits, times = [], []
        for q in questions:
            t = time.perf_counter()
            found = retriever.search(q["question"], top_k=20, mode=mode)
            times.append(time.perf_counter() - t)
            hits.append([(h.document_id, h.start, h.end) for h in found])
        results[mode] = {**score(hits, questions), **percentiles(times)}
        print(mode, json.dumps(results[mode]), flush=True)

    if args.tune:
        results["fusion_tuning"] = tune_fusion(retriever, passages, SQUAD / "train-v1.1.json")
        best = results["fusion_tuning"]["best"]
        tuned = Retriever(index, embedder=embedder, rrf_k=best["rrf_k"],
                          bm25_weight=best["bm25_weight"])
        hits = [[(h.document_id, h.start, h.end) for h in tuned.search(q["question"], 20)]
                for q in questions]
        results["hybrid_tuned"] = {**score(hits, questions), **best}
        print("hybrid_tuned", json.dumps(results["hybrid_tuned"]), flush=True)

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
    for mode in ("rank_bm25_plain", "bm25", "dense", "hybrid"):
        r = results[mode]
        rows.append(f"{mode:<16} {r['recall@1']:5.1f}  {r['recall@5']:5.1f}  {r['recall@20']:5.1f}"
                    f"  {r['mrr@20']:6.1f}  {r['p50_ms']:7.1f} {r['p95_ms']:7.1f}")
    if "build" in results:
        b = results["build"]
        rows.append(f"build: {b['passages']} passages in {b['seconds']:.0f} s, "
                    f"peak RSS {b['peak_rss_mb']:.0f} MB")
    print("\n".join(rows))
    out = Path(args.results) / "retrieval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}; index in {index}")


if __name__ == "__main__":
    main()
