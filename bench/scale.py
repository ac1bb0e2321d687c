"""Scale benchmark: the SQuAD collection among real distractor documents, 10k to 200k passages.

    apt-get install python3.11-doc        # the distractors: Python's HTML documentation
    python bench/scale.py                 # SQuAD alone, then 10k, 50k and 200k passages
    python bench/scale.py --sizes 10000 --questions 100

Distractors are the pages of Debian's python3.11-doc, read and chunked by SpanQA's own
indexer and replicated under new document ids until the collection holds the size asked
for. Embedding 200k passages takes hours on 2 CPU cores, so distractor passages get random
unit vectors (seeded by their text) instead of embeddings: BM25 indexes their real text,
the dense index their random vectors. SQuAD passages and all questions are embedded for
real. Each size is built in its own process, so its peak memory is its own; the build time
is reported as run and with the time real embeddings of the random units would add, at the
seconds per unit the real embedder spent on the SQuAD units in the same build. Writes
bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from spanqa.index.records import Document  # noqa: E402
from spanqa.indexer.build import IndexConfig, update_index  # noqa: E402
from spanqa.indexer.chunking import chunk_document  # noqa: E402
from spanqa.indexer.formats import iter_documents  # noqa: E402
from spanqa.runtime.embedder import Embedder  # noqa: E402

SQUAD = Path(os.environ.get("SPANQA_SQUAD_DIR", REPO.parent / "shared" / "squad"))
FILES = ("train-v1.1.json", "dev-v1.1.json")
DOCS = Path("/usr/share/doc/python3.11/html")
MARK = "Python docs: "  # title prefix of distractors: their passages get random vectors
CHUNK_BYTES = 30 * 1024 * 1024


class DistractorEmbedder:
    """Real embeddings for SQuAD passages and questions, random unit vectors for distractor
    passages (recognised by their title prefix): the index measured without hours of
    embedding. Says it is the real model, so the index it builds reads as an ordinary one."""

    def __init__(self) -> None:
        self.real = Embedder("minilm")
        self.name, self.backend, self.dim = "minilm", self.real.backend, self.real.dim
        self.embedded = self.randomised = 0
        self.seconds = 0.0  # spent embedding for real

    def encode(self, texts, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        real = [i for i, t in enumerate(texts) if not t.startswith(MARK)]
        if real:
            began = time.perf_counter()
            out[real] = self.real.encode([texts[i] for i in real], progress=progress)
            self.seconds += time.perf_counter() - began
        for i, text in enumerate(texts):
            if text.startswith(MARK):
                v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(self.dim)
                out[i] = v / np.linalg.norm(v)
        self.embedded += len(real)
        self.randomised += len(texts) - len(real)
        return out


@functools.cache
def _distractor_documents() -> tuple[list[Document], list[int]]:
    """The documentation's documents and their passage counts (read once: HTML is slow)."""
    docs = [d for d in iter_documents([DOCS]) if isinstance(d, Document) and d.text.strip()]
    return docs, [len(chunk_document(d, IndexConfig().chunk)) for d in docs]


def write_distractors(target_passages: int, squad_passages: int, out: Path) -> dict:
    """JSONL files of distractor records, the docs replicated until the total is reached."""
    docs, counts = _distractor_documents()
    per_copy = sum(counts)
    if per_copy == 0:
        raise SystemExit(f"no readable text in {DOCS}")
    need = max(0, target_passages - squad_passages)
    files, written, copy, size = [], 0, 0, CHUNK_BYTES
    handle = None
    while written < need:
        for doc, count in zip(docs, counts, strict=True):
            if written >= need:
                break
            if size >= CHUNK_BYTES:
                if handle:
                    handle.close()
                files.append(out / f"distractors-{len(files):03d}.jsonl")
                handle, size = files[-1].open("w", encoding="utf-8"), 0
            record = {"id": f"{Path(doc.path).relative_to(DOCS)}~{copy}",
                      # The copy in the title: no two distractors share a text (or a vector).
                      "title": f"{MARK}{doc.title} ({copy})", "text": doc.text,
                      "metadata": {"source": "python3.11-doc", "copy": copy}}
            line = json.dumps(record, ensure_ascii=False) + "\n"
            handle.write(line)
            size += len(line.encode())
            written += count
        copy += 1
    if handle:
        handle.close()
    return {"documents_per_copy": len(docs), "passages_per_copy": per_copy, "copies": copy,
            "files": [str(f) for f in files]}


def build_and_measure(index: Path, files: list[str], questions: int) -> dict:
    """One size, in its own process: build, disk, memory, latency, recall."""
    sys.path.insert(0, str(REPO / "bench"))
    from retrieval import gold_spans, run_modes

    from spanqa.retriever.search import Retriever

    embedder = DistractorEmbedder()
    began = time.perf_counter()
    report = update_index(index, add=[SQUAD / f for f in FILES] + [Path(f) for f in files],
                          rebuild=True, embedder=embedder, max_file_bytes=2 * CHUNK_BYTES,
                          progress=False)
    build_seconds = time.perf_counter() - began
    build_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    generation = index / (index / "CURRENT").read_text().strip()
    disk = sum(f.stat().st_size for f in generation.rglob("*") if f.is_file())

    before = _rss_mb()
    retriever = Retriever(index, embedder=embedder.real)
    qs = gold_spans(SQUAD / "dev-v1.1.json")[:questions]
    retriever.search(qs[0]["question"], 20)  # warm: first-call allocations
    results = run_modes(retriever, qs, {m: m for m in ("bm25", "dense", "hybrid")})
    loaded = _rss_mb() - before  # after the queries: the pages they touched are counted
    return {"passages": report.passages, "documents": report.documents,
            "faiss": type(retriever.faiss).__name__, "build_seconds": build_seconds,
            "vectors": retriever.faiss.ntotal, "most_units": retriever.most_units,
            "embedded": embedder.embedded, "random_vectors": embedder.randomised,
            "embed_seconds_per_vector": embedder.seconds / max(1, embedder.embedded),
            "disk_mb": disk / 2**20, "disk_bytes_per_passage": disk / report.passages,
            "build_peak_rss_mb": build_rss, "loaded_rss_mb": loaded,
            "loaded_bytes_per_passage": loaded * 2**20 / report.passages,
            "questions": len(qs), **results}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def embedding_throughput(n: int = 200) -> dict:
    """The default embedder on real SQuAD paragraphs (for the build estimate)."""
    sys.path.insert(0, str(REPO / "bench"))
    from retrieval import embedding_speed

    data = json.loads((SQUAD / "dev-v1.1.json").read_text())["data"]
    texts = [p["context"] for a in data for p in a["paragraphs"]][:n]
    return embedding_speed(texts, "auto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0,10000,50000,200000",
                        help="total passages (0: the SQuAD collection alone)")
    parser.add_argument("--questions", type=int, default=300, help="dev questions asked")
    parser.add_argument("--work", default=None, help="keep indexes here (default: temporary)")
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    parser.add_argument("--one", nargs=2, metavar=("INDEX", "FILES_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        out = build_and_measure(Path(args.one[0]), json.loads(args.one[1]), args.questions)
        print("RESULT " + json.dumps(out), flush=True)
        return
    if not DOCS.is_dir():
        raise SystemExit(f"{DOCS} not found: apt-get install python3.11-doc")

    work = Path(args.work or tempfile.mkdtemp(prefix="spanqa-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    speed = embedding_throughput()
    rate = max(speed["passages_per_s"].values())
    results: dict = {"embedding": speed, "embedding_passages_per_s": rate, "sizes": []}
    squad_passages = 1858
    for size in [int(s) for s in args.sizes.split(",")]:
        folder = work / f"distractors-{size}"
        folder.mkdir(exist_ok=True)
        plan = write_distractors(size, squad_passages, folder) if size else {"files": []}
        index = work / f"index-{size}"
        run = subprocess.run([sys.executable, __file__, "--one", str(index),
                              json.dumps(plan["files"]), "--questions", str(args.questions)],
                             capture_output=True, text=True)
        line = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
        if run.returncode or not line:
            raise SystemExit(f"size {size} failed:\n{run.stderr[-3000:]}")
        row = json.loads(line[0][7:]) | {"target": size,
                                         "copies": plan.get("copies", 0)}
        row["build_seconds_with_real_embeddings"] = row["build_seconds"] + \
            row["random_vectors"] * row["embed_seconds_per_vector"]
        results["sizes"].append(row)
        print(_line(row), flush=True)
        out = Path(args.results) / "scale.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


def _line(r: dict) -> str:
    h = r["hybrid"]
    return (f"{r['passages']:>7} passages, {r['vectors']} vectors ({r['faiss']}): "
            f"build {r['build_seconds']:.0f} s "
            f"(+{r['build_seconds_with_real_embeddings'] - r['build_seconds']:.0f} s to embed "
            f"for real), disk {r['disk_mb']:.0f} MB ({r['disk_bytes_per_passage']:.0f} B/passage),"
            f" build peak RSS {r['build_peak_rss_mb']:.0f} MB, loaded +{r['loaded_rss_mb']:.0f} MB"
            f" ({r['loaded_bytes_per_passage']:.0f} B/passage); hybrid R@1/5/20 "
            f"{h['recall@1']:.1f}/{h['recall@5']:.1f}/{h['recall@20']:.1f}, "
            f"p50/p95 {h['p50_ms']:.1f}/{h['p95_ms']:.1f} ms; bm25 p95 "
            f"{r['bm25']['p95_ms']:.1f} ms, dense p95 {r['dense']['p95_ms']:.1f} ms")


if __name__ == "__main__":
    main()
