"""Index build, incremental updates, atomic publishing, the writer lock, and search."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spanqa.core.atomic import write_json_atomic
from spanqa.index import store
from spanqa.index.layout import IndexBusyError, IndexDir
from spanqa.index.records import Document
from spanqa.index.text import tokenize
from spanqa.index.verify import verify_index
from spanqa.indexer.build import IndexConfig, update_index
from spanqa.indexer.formats import document_id
from spanqa.retriever.search import Filters, Fusion, Retriever, convex_fuse
from spanqa.runtime.embedder import Embedder

REPO = Path(__file__).resolve().parents[1]

DOCS = {
    "europe/france.txt": "Paris is the capital of France. The Seine flows through Paris.\n\n"
                         "France is famous for its cheeses and wines.",
    "europe/spain.html": "<html><head><title>Spain</title><script>var x = 1;</script></head>"
                         "<body><p>Madrid is the capital of Spain.</p>"
                         "<p>The Prado museum is in Madrid.</p></body></html>",
    "asia/japan.md": "# Japan\n\nTokyo is the capital of Japan. Mount Fuji is its highest peak.",
    "notes.jsonl": json.dumps({"id": "k2", "title": "K2", "text": "K2 is the second highest "
                               "mountain on Earth, in the Karakoram range.",
                               "metadata": {"tags": ["mountains"]}}) + "\n"
                   + json.dumps({"id": "nile", "title": "Nile", "text": "The Nile is a major "
                                 "river in Africa, flowing into the Mediterranean.",
                                 "metadata": {"tags": ["rivers"]}}) + "\n",
    "broken.pdf": "%PDF-1.4 this is not really a pdf",
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("minilm")


def write_docs(root: Path, docs: dict[str, str]) -> Path:
    for name, text in docs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def spanqa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spanqa.api.cli", *args], cwd=REPO,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_build_indexes_documents_and_reports_skips(tmp_path, embedder):
    docs = write_docs(tmp_path / "docs", DOCS)
    report = update_index(tmp_path / "idx", add=[docs], rebuild=True, embedder=embedder,
                          progress=False)
    assert report.documents == 5 and report.added == 5  # 3 files + 2 jsonl records
    assert [s.path for s in report.skipped] == [str(docs / "broken.pdf")]
    assert "skipped" in report.table() and "broken.pdf" in report.table()
    assert verify_index(tmp_path / "idx") == []
    retriever = Retriever(tmp_path / "idx", embedder=embedder)
    for mode in ("bm25", "dense", "hybrid"):
        hits = retriever.search("What is the capital of Spain?", top_k=3, mode=mode)
        assert hits[0].title == "Spain", mode
        assert "<script>" not in hits[0].text and "var x" not in hits[0].text
    hits = retriever.search("highest mountain Karakoram", top_k=2)
    assert hits[0].title == "K2" and hits[0].bm25_rank == 1 and hits[0].dense_rank is not None
    france = retriever.search("Which river flows through Paris?", top_k=1, mode="bm25")[0]
    source = (docs / "europe/france.txt").read_text()
    assert source[france.start : france.end] == france.text


def test_filters_by_path_title_and_tags(tmp_path, embedder):
    docs = write_docs(tmp_path / "docs", DOCS)
    update_index(tmp_path / "idx", add=[docs], rebuild=True, embedder=embedder, progress=False)
    retriever = Retriever(tmp_path / "idx", embedder=embedder)
    question = "What is the capital?"
    for mode in ("bm25", "dense", "hybrid"):
        hits = retriever.search(question, 10, mode, Filters(path_prefix=str(docs / "europe")))
        assert {h.title for h in hits} == {"france", "Spain"}, mode
        hits = retriever.search(question, 10, mode, Filters(tags=("rivers",)))
        assert [h.title for h in hits] == ["Nile"]
        assert retriever.search(question, 10, mode, Filters(title="Japan"))[0].title == "Japan"
        assert retriever.search(question, 10, mode, Filters(title="Nowhere")) == []


def test_add_embeds_only_new_and_changed_documents(tmp_path, embedder):
    docs = write_docs(tmp_path / "docs", DOCS)
    index = tmp_path / "idx"
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    before = {h.document_id: h.passage_id for h in
              Retriever(index, embedder=embedder).search("capital", 20, "bm25")}
    (docs / "asia/japan.md").write_text("# Japan\n\nKyoto was the capital of Japan for "
                                        "over a thousand years.")
    write_docs(docs, {"asia/india.txt": "New Delhi is the capital of India."})
    report = update_index(index, add=[docs], embedder=embedder, progress=False)
    assert (report.added, report.unchanged, report.embedded) == (2, 4, 2)
    assert report.documents == 6 and verify_index(index) == []
    retriever = Retriever(index, embedder=embedder)
    after = {h.document_id: h.passage_id for h in retriever.search("capital", 20, "bm25")}
    france = document_id(docs / "europe/france.txt")
    assert after[france] == before[france], "unchanged passages keep their ids"
    assert retriever.search("Kyoto thousand years", 1)[0].title == "Japan"
    assert "Tokyo" not in " ".join(h.text for h in retriever.search("Tokyo", 10, "bm25"))


def test_remove_by_id_and_by_path(tmp_path, embedder):
    docs = write_docs(tmp_path / "docs", DOCS)
    index = tmp_path / "idx"
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    report = update_index(index, remove=[str(docs / "europe"), "no-such-document"],
                          progress=False)
    assert report.removed == 2 and report.not_found == ["no-such-document"]
    spain = document_id(docs / "asia/japan.md")
    report = update_index(index, remove=[spain], progress=False)
    assert report.removed == 1 and report.documents == 2 and report.embedded == 0
    assert verify_index(index) == []
    titles = {h.title for h in Retriever(index, embedder=embedder).search("capital", 10, "bm25")}
    assert titles <= {"K2", "Nile"}


def test_a_second_writer_is_refused(tmp_path, embedder):
    docs = write_docs(tmp_path / "docs", DOCS)
    index = tmp_path / "idx"
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    with IndexDir(index).writer():
        with pytest.raises(IndexBusyError):
            update_index(index, add=[docs], embedder=embedder, progress=False)
        run = spanqa("index", "add", str(docs), "--index", str(index))
        assert run.returncode == 2 and "being written by pid" in run.stderr


def test_readers_keep_their_generation_while_a_new_one_is_published(tmp_path, embedder):
    docs = write_docs(tmp_path / "docs", DOCS)
    index = tmp_path / "idx"
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    old = Retriever(index, embedder=embedder)
    write_docs(docs, {"asia/india.txt": "New Delhi is the capital of India."})
    update_index(index, add=[docs], embedder=embedder, progress=False)
    assert all(h.title != "india" for h in old.search("New Delhi India", 10, "bm25"))
    assert Retriever(index, embedder=embedder).search("New Delhi India", 1)[0].title == "india"


@pytest.mark.parametrize("moment", ["embed:", "gen-000002"])
def test_a_killed_update_leaves_the_previous_index_usable(tmp_path, squad_dir, embedder, moment):
    """SIGKILL an update while it embeds (its progress bar shows) or writes the generation."""
    docs = write_docs(tmp_path / "docs", DOCS)
    index = tmp_path / "idx"
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    live = IndexDir(index).current()
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "spanqa.api.cli", "index", "add",
                                 str(squad_dir / "sample-v1.1.json"), "--index", str(index)],
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if moment in log.read_text() or (index / moment).exists():
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the update was killed before it finished"
    assert IndexDir(index).current() == live
    assert verify_index(index) == []
    assert Retriever(index, embedder=embedder).search("capital of Spain", 1)[0].title == "Spain"
    report = update_index(index, add=[docs], embedder=embedder, progress=False)
    assert report.unchanged == 5 and verify_index(index) == []
    assert len(list(index.glob("gen-*"))) <= 2, "leftovers of the killed writer are removed"


def test_search_command_prints_json_hits(tmp_path):
    docs = write_docs(tmp_path / "docs", DOCS)
    run = spanqa("index", "build", str(docs), "--index", str(tmp_path / "idx"))
    assert run.returncode == 0, run.stderr
    assert "broken.pdf" in run.stdout
    run = spanqa("search", "capital of Spain", "--index", str(tmp_path / "idx"), "--top-k", "2",
                 "--json")
    assert run.returncode == 0, run.stderr
    hits = json.loads(run.stdout)
    assert len(hits) == 2 and hits[0]["title"] == "Spain"
    for key in ("text", "score", "passage_id", "document_id", "title", "start", "end"):
        assert key in hits[0]
    assert spanqa("index", "verify", "--index", str(tmp_path / "idx")).returncode == 0
    stats = Retriever(tmp_path / "idx").stats()
    assert stats["documents"] == 5 and stats["faiss"] == "IndexFlatIP"
    missing = spanqa("search", "x", "--index", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no index in" in missing.stderr


def test_changing_settings_needs_a_rebuild(tmp_path, embedder):
    docs = write_docs(tmp_path / "docs", DOCS)
    update_index(tmp_path / "idx", add=[docs], rebuild=True, embedder=embedder, progress=False)
    with pytest.raises(ValueError, match="rebuild"):
        update_index(tmp_path / "idx", add=[docs], config=IndexConfig(words=50), progress=False)


def test_the_index_records_its_embedding_backend(tmp_path):
    """Questions must be embedded like the passages were: the index says how, and an old
    index (built before backends existed, with PyTorch) keeps being read as PyTorch."""
    docs = write_docs(tmp_path / "docs", DOCS)
    index = tmp_path / "idx"
    embedder = Embedder("minilm", backend="onnx-int8")
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    retriever = Retriever(index)
    assert retriever.embedder_backend == "onnx-int8"
    assert retriever.embedder.backend == "onnx-int8"
    assert retriever.search("capital of Spain", 1, "dense")[0].title == "Spain"

    torch_embedder = Embedder("minilm", backend="torch")
    with pytest.raises(ValueError, match="backend"):
        update_index(index, add=[docs], embedder=torch_embedder, progress=False)

    manifest_file = IndexDir(index).current() / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["config"]["backend"]
    manifest_file.write_text(json.dumps(manifest))
    assert Retriever(index).embedder_backend == "torch"
    (docs / "extra.txt").write_text("Lisbon is the capital of Portugal.")
    report = update_index(index, add=[docs], embedder=torch_embedder, progress=False)
    assert report.embedded == 1
    assert Retriever(index).embedder_backend == "torch"


def test_convex_fusion_adds_normalised_bm25_and_cosine():
    rows = np.array([7, 3, 5])
    fused = convex_fuse(np.array([10.0, 5.0, 0.0]), np.array([0.2, 0.9, 0.5]), rows, 0.5)
    assert [r for r, _ in fused] == [3, 7, 5]
    assert [s for _, s in fused] == pytest.approx([0.5 * 0.5 + 0.45, 0.5 + 0.1, 0.25])
    # No BM25 match at all: the cosine alone orders; equal scores go to the lower row.
    assert [r for r, _ in convex_fuse(np.zeros(3), np.array([0.1, 0.1, 0.3]), rows, 0.3)] \
        == [5, 3, 7]
    with pytest.raises(ValueError, match="fusion"):
        Fusion("max")
    with pytest.raises(ValueError, match="bm25_share"):
        Fusion(bm25_share=1.5)


def test_hybrid_scores_every_candidate_by_both_retrievers(tmp_path, embedder):
    docs = write_docs(tmp_path / "docs", DOCS)
    update_index(tmp_path / "idx", add=[docs], rebuild=True, embedder=embedder, progress=False)
    retriever = Retriever(tmp_path / "idx", embedder=embedder, fusion=Fusion(bm25_share=0.4))
    question = "Which river flows through Paris?"
    hits = retriever.search(question, 10)
    bm25 = retriever.bm25.scores(tokenize(question))
    query = retriever.embed_questions([question])[0]
    assert hits[0].title == "france" and len(hits) == 5  # every passage is a candidate
    scores = []
    for hit in hits:
        (row,) = [r["row"] for r in retriever.db.query(
            "select row from passages where id = ?", [hit.passage_id])]
        units = retriever.vectors[retriever.owners == row]  # the passage and its sentences
        expected = 0.4 * bm25[row] / bm25.max() + 0.6 * float((units @ query).max())
        assert hit.score == pytest.approx(expected, abs=1e-5)
        scores.append(hit.score)
    assert scores == sorted(scores, reverse=True)
    rrf = Retriever(tmp_path / "idx", embedder=embedder, fusion=Fusion("rrf", rrf_k=60))
    assert rrf.search(question, 1)[0].score == pytest.approx(2 / 61)  # first in both lists
    run = spanqa("search", question, "--index", str(tmp_path / "idx"), "--fusion", "rrf",
                 "--json", "--top-k", "1")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)[0]["score"] == pytest.approx(2 / 61)


# --------------------------------------------------------------------------------------
# strict JSON: a NaN stored in one record's metadata would fail every tag-filtered search
# in SQLite ("malformed JSON"): the record is skipped with its reason, the rest indexed


def test_a_nan_record_is_skipped_and_tag_filters_keep_working(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    lines = [
        json.dumps({"id": "nile", "title": "Nile", "text": "The Nile is a major river in "
                    "Africa.", "metadata": {"tags": ["rivers"], "score": 0.5}}),
        '{"id": "n1", "title": "Danube", "text": "The Danube is a river in Europe.", '
        '"metadata": {"tags": ["rivers"], "score": NaN}}',
        json.dumps({"id": "k2", "title": "K2", "text": "K2 is the second highest mountain.",
                    "metadata": {"tags": ["mountains"]}}),
    ]
    (docs / "notes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    index = tmp_path / "idx"
    report = update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    assert report.documents == 2
    assert [(s.path, s.reason) for s in report.skipped] == [(
        str(docs / "notes.jsonl"),
        "line 2: record 'n1': metadata.score is NaN, which strict JSON does not allow "
        "(no NaN or Infinity)")]
    assert verify_index(index) == []
    retriever = Retriever(index, embedder=embedder)
    for mode in ("bm25", "dense", "hybrid"):
        hits = retriever.search("Which river is in Europe?", 10, mode, Filters(tags=("rivers",)))
        assert [h.title for h in hits] == ["Nile"], mode
        hits = retriever.search("highest mountain", 10, mode, Filters(tags=("mountains",)))
        assert [h.title for h in hits] == ["K2"], mode
    assert not retriever._guard_tags  # strict metadata: no json_valid on every row


def test_verify_reports_metadata_that_is_not_strict_json(tmp_path, embedder):
    docs = write_docs(tmp_path / "docs", DOCS)
    index = tmp_path / "idx"
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    assert verify_index(index) == []
    nile = document_id(docs / "notes.jsonl", "nile")
    k2 = document_id(docs / "notes.jsonl", "k2")
    conn = sqlite3.connect(IndexDir(index).current() / store.DB_FILE)
    with conn:  # what an older SpanQA stored, and a hand edit gone wrong
        conn.execute("update documents set metadata = ? where id = ?",
                     ('{"tags": ["rivers"], "score": NaN}', nile))
        conn.execute("update documents set metadata = ? where id = ?", ('{"tags": ["mou', k2))
    conn.close()

    problems = verify_index(index)
    assert len(problems) == 1, problems
    assert problems[0].startswith("2 documents have metadata that is not strict JSON")
    assert f"document {nile} ({docs / 'notes.jsonl'}): NaN is not valid JSON" in problems[0]
    assert f"document {k2} (" in problems[0]
    run = spanqa("index", "verify", "--index", str(index))
    assert run.returncode == 1 and nile in run.stdout and k2 in run.stdout

    # Searching still works: SQLite refuses the rows in the tag filter, which then runs
    # again with a json_valid check on every row, and so does every later one; a row whose
    # metadata does not parse matches no tag.
    retriever = Retriever(index, embedder=embedder)
    for _ in range(2):
        assert retriever.search("river", 10, "bm25", Filters(tags=("rivers",))) == []
        assert retriever._guard_tags
    hits = retriever.search("capital", 10, "bm25", Filters(path_prefix=str(docs / "asia")))
    assert [h.title for h in hits] == ["Japan"]


def test_stored_json_refuses_nan_and_infinity(tmp_path):
    """The writers are strict too: a non-finite number that got past the readers is an error
    where it is written, not a broken index or file found later."""
    document = Document(id="d", path="/d.txt", title="d", text="text", content_hash="h",
                        metadata={"score": float("nan")})
    with pytest.raises(ValueError, match="JSON compliant"):
        store.document_row(document)
    target = tmp_path / "calibration.json"
    with pytest.raises(ValueError, match=f"not writing {target}"):
        write_json_atomic(target, {"ece": float("inf")})
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left
    write_json_atomic(target, {"ece": 0.25})
    assert store.strict_loads(target.read_text()) == {"ece": 0.25}
    with pytest.raises(ValueError, match="-Infinity is not valid JSON"):
        store.strict_loads('{"x": -Infinity}')
