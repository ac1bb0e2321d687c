"""Hostile files parsed under limits in the parse worker: zip bombs, deep pages, files that
take too long, files of too many records, workers that crash, run out of memory, flood the
parent or lie to it, builds cancelled mid-file or out of parse time."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

from spanqa.index import store
from spanqa.index.layout import IndexDir
from spanqa.index.records import Document, Skipped
from spanqa.indexer.build import update_index
from spanqa.indexer.cli import add_limit_arguments, limits_from_args
from spanqa.indexer.formats import document_id, read_file
from spanqa.indexer.isolation import Cancelled, IsolatedReader
from spanqa.indexer.limits import MiB, ParseLimits
from spanqa.retriever.search import Retriever
from spanqa.runtime.embedder import Embedder

# A worker that misbehaves on purpose for files whose names start with one of the words
# below, and is the real parse worker for every other file. A hanging worker first leaves
# "parsing-NAME" beside this script, so that a test knows the file is in the worker. A
# forging file holds the path of the file whose document it claims to be.
MISBEHAVING_WORKER = """
import json, os, signal, sys, time
from pathlib import Path
import spanqa.indexer.parse_worker as worker
import spanqa.indexer.formats as readers
from spanqa.indexer.formats import document_id
real_read, real_encode = readers.read_file, worker.encode_results
here = Path(__file__).parent

def read_file(path, **kwargs):
    name = os.path.basename(str(path))
    if name.startswith("hang"):
        (here / ("parsing-" + name)).touch()
        time.sleep(600)
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return real_read(path, **kwargs)

def encode_results(results):
    name = os.path.basename(results[0].path) if results else ""
    if name.startswith("flood"):
        return b"[" + b" " * (256 << 20)  # and no end in sight
    if name.startswith("garbage"):
        return b"\\xff{ not json"
    if not name.startswith(("forged-id", "forged-path", "nan", "trailing")):
        return real_encode(results)
    items = json.loads(real_encode(results))
    document = items[0]["document"]
    victim = document["text"].strip()
    if name.startswith("forged-id"):
        document["id"] = document_id(victim)
    elif name.startswith("forged-path"):
        document["path"] = document["metadata"]["path"] = victim
        document["id"] = document_id(victim)
    elif name.startswith("nan"):
        document["metadata"]["score"] = float("nan")
    else:
        return json.dumps(items).encode() + b"\\n[]"
    return json.dumps(items).encode()

readers.read_file = read_file
worker.encode_results = encode_results
sys.exit(worker.main())
"""


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("minilm")


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def make_docx_bomb(path: Path, inflated_mb: int, declared: int | None = None) -> Path:
    """A real DOCX whose word/document.xml is valid XML padded with `inflated_mb` MB of
    spaces: a few hundred KB on disk. `declared` makes the zip lie about the member's size."""
    import docx

    base = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("Nothing to see here.")
    document.save(base)
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        head = tail = b""
        for item in src.infolist():
            if item.filename == "word/document.xml":
                head, tail = src.read(item).split(b"</w:body>")
            else:
                out.writestr(item, src.read(item))
        with out.open("word/document.xml", "w") as member:
            member.write(head)
            block = b" " * MiB
            for _ in range(inflated_mb):
                member.write(block)
            member.write(b"</w:body>" + tail)
    if declared is not None:
        _declare_size(path, "word/document.xml", declared)
    return path


def _declare_size(path: Path, name: str, size: int) -> None:
    """Overwrites the uncompressed size of `name` in its local header and in the central
    directory (CRC and data untouched): a header that lies."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
        central = archive.start_dir
    data[info.header_offset + 22:info.header_offset + 26] = size.to_bytes(4, "little")
    offset = central
    while data[offset:offset + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = (int.from_bytes(data[offset + i:offset + i + 2],
                                                           "little") for i in (28, 30, 32))
        if data[offset + 46:offset + 46 + name_len] == name.encode():
            data[offset + 24:offset + 28] = size.to_bytes(4, "little")
        offset += 46 + name_len + extra_len + comment_len
    path.write_bytes(bytes(data))


def misbehaving_command(tmp_path: Path) -> list[str]:
    """The command that starts MISBEHAVING_WORKER, written into `tmp_path`."""
    script = tmp_path / "misbehaving_worker.py"
    script.write_text(MISBEHAVING_WORKER, encoding="utf-8")
    return [sys.executable, str(script)]


def misbehaving(tmp_path: Path, limits: ParseLimits) -> IsolatedReader:
    return IsolatedReader(limits, command=misbehaving_command(tmp_path))


def slow_build_docs(docs: Path) -> list[Path]:
    """A file each side of one the misbehaving worker hangs on."""
    docs.mkdir()
    files = [docs / "first.txt", docs / "hang.txt", docs / "last.txt"]  # in walking order
    for path, text in zip(files, ("Alpha wombats live in the first file.", "never read",
                                  "Gamma platypus lives in the last file."), strict=True):
        path.write_text(text, encoding="utf-8")
    return files


def deep_html(depth: int) -> str:
    return f"<html><body>{'<div>' * depth}bottom{'</div>' * depth}<p>after</p></body></html>"


# ------------------------------------------------------------------------- zip bombs


def test_a_docx_zip_bomb_is_skipped_in_the_worker_and_the_parent_stays_small(tmp_path):
    bomb = make_docx_bomb(tmp_path / "bomb.docx", 300)
    assert bomb.stat().st_size < 2 * MiB
    fine = tmp_path / "fine.txt"
    fine.write_text("The parser survived the bomb.", encoding="utf-8")
    before = rss_bytes()
    with IsolatedReader(ParseLimits()) as reader:
        results = reader(bomb) + reader(fine)
    grown = rss_bytes() - before
    assert [type(r) for r in results] == [Skipped, Document]
    assert results[0].reason.startswith("unpacked size over the 200 MB limit ("), results
    assert "word/document.xml" in results[0].reason
    assert results[1].text == "The parser survived the bomb."
    assert reader.started == 1  # refused from the zip directory: the worker lived on
    assert grown < 200 * MiB, f"the parent grew by {grown / MiB:.0f} MB"


def test_a_bomb_whose_header_lies_is_not_inflated_past_it(tmp_path):
    bomb = make_docx_bomb(tmp_path / "liar.docx", 300, declared=20_000)
    before = rss_bytes()
    result = read_file(bomb)  # in-process: the size checks hold without the worker
    grown = rss_bytes() - before
    assert len(result) == 1 and isinstance(result[0], Skipped)
    assert result[0].reason.startswith("unreadable DOCX (BadZipFile: Bad CRC-32"), result
    assert grown < 200 * MiB, f"grew by {grown / MiB:.0f} MB"


def test_a_bomb_under_the_size_limits_meets_the_worker_memory_limit(tmp_path):
    bomb = make_docx_bomb(tmp_path / "bomb.docx", 300)
    fine = tmp_path / "after.md"
    fine.write_text("# After\n\nRead by a fresh worker.", encoding="utf-8")
    limits = ParseLimits(max_member_bytes=400 * MiB, max_unpacked_bytes=500 * MiB,
                         memory_bytes=384 * MiB)
    before = rss_bytes()
    with IsolatedReader(limits) as reader:
        results = reader(bomb) + reader(fine)
        assert reader.started == 2
    grown = rss_bytes() - before
    assert results[0] == Skipped(str(bomb), "parser exceeded its memory limit (384 MB)")
    assert isinstance(results[1], Document) and results[1].title == "After"
    assert grown < 200 * MiB, f"the parent grew by {grown / MiB:.0f} MB"


# ------------------------------------------------------------------------- deep pages


def test_a_100000_deep_page_is_skipped_by_the_worker_with_its_reason(tmp_path):
    page = tmp_path / "deep.html"
    page.write_text(deep_html(100_000), encoding="utf-8")
    fine = tmp_path / "shallow.html"
    fine.write_text(deep_html(50), encoding="utf-8")
    with IsolatedReader(ParseLimits(seconds=30)) as reader:
        deep, shallow = reader(page)[0], reader(fine)[0]
    assert deep == Skipped(str(page), "HTML nested deeper than the 1024-level limit")
    assert isinstance(shallow, Document) and shallow.text == "bottom\n\nafter"


# ------------------------------------------------------------------------- time limits


def test_a_file_over_the_time_limit_is_skipped_and_the_build_goes_on(tmp_path, embedder):
    docs = tmp_path / "docs"
    _, hang, _ = slow_build_docs(docs)
    report = update_index(tmp_path / "index", add=[docs], rebuild=True, embedder=embedder,
                          progress=False, limits=ParseLimits(seconds=2),
                          worker_command=misbehaving_command(tmp_path))
    assert report.skipped == [Skipped(str(hang), "took longer than 2 s")]
    assert report.added == 2
    db = store.open_db(IndexDir(tmp_path / "index").current())
    assert sorted(row["title"] for row in db["documents"].rows) == ["first", "last"]


def test_the_parse_budget_stops_the_file_that_spends_it_and_skips_the_rest(tmp_path,
                                                                          embedder):
    """One build's files share `job_seconds`: a worker that hangs spends it (long before
    the per-file limit), and the files after it are not parsed at all."""
    docs = tmp_path / "docs"
    _, hang, last = slow_build_docs(docs)
    report = update_index(tmp_path / "index", add=[docs], rebuild=True, embedder=embedder,
                          progress=False, limits=ParseLimits(seconds=600, job_seconds=3),
                          worker_command=misbehaving_command(tmp_path))
    reason = "the job's parse budget of 3 s is spent"
    assert report.skipped == [Skipped(str(hang), reason), Skipped(str(last), reason)]
    assert report.added == 1
    db = store.open_db(IndexDir(tmp_path / "index").current())
    assert [row["title"] for row in db["documents"].rows] == ["first"]


def test_a_hanging_worker_is_killed_and_the_next_file_gets_a_new_one(tmp_path):
    hang, after = tmp_path / "hang.txt", tmp_path / "after.txt"
    hang.write_text("never read", encoding="utf-8")
    after.write_text("read after the kill", encoding="utf-8")
    with misbehaving(tmp_path, ParseLimits(seconds=1)) as reader:
        assert reader(after)[0].text == "read after the kill"
        first = reader._proc.pid
        assert reader(hang) == [Skipped(str(hang), "took longer than 1 s")]
        with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
            os.kill(first, 0)
        assert reader(after)[0].text == "read after the kill"
        assert reader.started == 2


def test_a_crashing_worker_is_reported_and_replaced(tmp_path):
    crash, after = tmp_path / "crash.json", tmp_path / "after.jsonl"
    crash.write_text("{}", encoding="utf-8")
    after.write_text(json.dumps({"id": "x", "text": "still here"}) + "\n", encoding="utf-8")
    with misbehaving(tmp_path, ParseLimits()) as reader:
        assert reader(crash) == [Skipped(str(crash), "parser crashed (killed by SIGSEGV)")]
        assert reader(after)[0].text == "still here"
        assert reader.started == 2


# ------------------------------------------------------------------------- replies


def test_a_file_of_more_records_than_the_limit_is_skipped_by_the_worker(tmp_path):
    over, at = tmp_path / "over.jsonl", tmp_path / "at.jsonl"
    over.write_text('{"text": "a"}\n' * 101, encoding="utf-8")
    at.write_text('{"text": "a"}\n' * 100, encoding="utf-8")
    with IsolatedReader(ParseLimits(max_records=100)) as reader:
        assert reader(over) == [Skipped(str(over), "101 records, more than the 100-record "
                                                   "limit")]
        assert [type(r) for r in reader(at)] == [Document] * 100
        assert reader.started == 1  # refused by the worker's reader: nothing to kill


def test_a_reply_over_the_size_limit_is_skipped(tmp_path):
    """5,000 tiny records make a reply of about 2 MB: over a 1 MB limit, the parent stops
    reading, kills the worker and skips the file; the next file gets a fresh worker."""
    many, after = tmp_path / "many.jsonl", tmp_path / "after.txt"
    many.write_text('{"text": "a"}\n' * 5000, encoding="utf-8")
    after.write_text("read after the kill", encoding="utf-8")
    with IsolatedReader(ParseLimits(max_reply_bytes=MiB)) as reader:
        assert reader(many) == [Skipped(str(many), "parse result over the 1 MB limit")]
        assert reader(after)[0].text == "read after the kill"
        assert reader.started == 2


def test_a_worker_that_floods_its_reply_cannot_grow_the_parent(tmp_path):
    """The worker sends 256 MB without an end: the parent reads no more than the limit."""
    flood, after = tmp_path / "flood.txt", tmp_path / "after.txt"
    flood.write_text("a small file", encoding="utf-8")
    after.write_text("read after the flood", encoding="utf-8")
    with misbehaving(tmp_path, ParseLimits(max_reply_bytes=8 * MiB)) as reader:
        reader(after)  # the worker started, its modules loaded: not the flood's cost
        before = rss_bytes()
        assert reader(flood) == [Skipped(str(flood), "parse result over the 8 MB limit")]
        grown = rss_bytes() - before
        assert reader(after)[0].text == "read after the flood"
    assert grown < 64 * MiB, f"the parent grew by {grown / MiB:.0f} MB"


@pytest.mark.parametrize(("name", "detail"), [
    ("garbage.txt", "not strict JSON in UTF-8"),
    ("nan.txt", "not strict JSON in UTF-8"),
    ("trailing.txt", "bytes after the end of the reply"),
    ("forged-id.txt", "item 0: an id that its path and record id do not give"),
    ("forged-path.txt", "item 0: a document of another path"),
])
def test_a_reply_that_is_not_what_the_reader_gives_is_refused(tmp_path, name, detail):
    """Whatever the worker sends is checked: a reply that is not strict JSON, or a document
    claiming another file's id or path, skips the file, and the worker is replaced."""
    victim, liar, after = tmp_path / "victim.txt", tmp_path / name, tmp_path / "after.txt"
    victim.write_text("The victim's own text.", encoding="utf-8")
    liar.write_text(str(victim.resolve()), encoding="utf-8")
    after.write_text("read by a fresh worker", encoding="utf-8")
    with misbehaving(tmp_path, ParseLimits()) as reader:
        assert reader(liar) == [Skipped(str(liar),
                                        f"parse worker sent an invalid reply ({detail})")]
        assert reader(after)[0].text == "read by a fresh worker"
        assert reader.started == 2


def test_a_forged_id_cannot_replace_another_document(tmp_path, embedder):
    """What the check is for: a worker gone wrong claims an indexed document's id for
    another file's text; build.py would have replaced that document with it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    victim = docs / "victim.txt"
    victim.write_text("Wombats dig burrows with their claws.", encoding="utf-8")
    index = tmp_path / "index"
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    forged = tmp_path / "forged-id.txt"
    forged.write_text(str(victim.resolve()), encoding="utf-8")
    report = update_index(index, add=[forged], embedder=embedder, progress=False,
                          worker_command=misbehaving_command(tmp_path))
    assert report.skipped == [Skipped(str(forged), "parse worker sent an invalid reply "
                                      "(item 0: an id that its path and record id do not give)")]
    assert report.added == 0
    db = store.open_db(IndexDir(index).current())
    rows = list(db["documents"].rows)
    assert [(r["id"], r["path"]) for r in rows] == [(document_id(victim), str(victim.resolve()))]
    hits = Retriever(index, embedder=embedder).search("What do wombats dig?", 1, "bm25")
    assert hits[0].text == "Wombats dig burrows with their claws."


def test_the_worker_returns_exactly_what_read_file_returns(tmp_path):
    from fpdf import FPDF

    (tmp_path / "notes.txt").write_text("Plain\r\ntext.", encoding="utf-8")
    (tmp_path / "page.html").write_text("<title>T</title><p>One</p><pre> two\n  x</pre>")
    records = [{"id": 1, "title": "Odd", "text": "lone \ud800 surrogate", "metadata": {"n": 1.5}},
               {"text": ""}]
    (tmp_path / "records.jsonl").write_text(
        "\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in ("Page one.", "Page two."):
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(tmp_path / "two.pdf"))
    names = ["notes.txt", "page.html", "records.jsonl", "two.pdf", "missing.md"]
    with IsolatedReader(ParseLimits()) as reader:
        for name in names:
            assert reader(tmp_path / name) == read_file(tmp_path / name), name


# ------------------------------------------------------------------------- cancelling


def test_a_build_cancelled_while_a_file_parses_publishes_nothing(tmp_path, embedder):
    """The cancel comes once the worker holds the file (it says so, then hangs): the
    parent must see it while it waits, kill the worker and publish nothing."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kept.txt").write_text("The first generation has this file.", encoding="utf-8")
    index = tmp_path / "index"
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    live = IndexDir(index).current()
    hang = docs / "hang.html"
    hang.write_text("<p>never read</p>", encoding="utf-8")
    in_worker = tmp_path / "parsing-hang.html"
    with pytest.raises(Cancelled, match="while a file was being parsed"):
        update_index(index, add=[hang], embedder=embedder, progress=False,
                     cancelled=in_worker.exists, limits=ParseLimits(seconds=600),
                     worker_command=misbehaving_command(tmp_path))
    assert in_worker.exists()
    assert IndexDir(index).current() == live
    assert IndexDir(index).generations() == [live]
    assert Retriever(index, embedder=embedder).passages == 1


def test_isolation_can_be_turned_off_and_the_size_limits_still_hold(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    bomb = make_docx_bomb(docs / "bomb.docx", 30)
    (docs / "ok.txt").write_text("In-process parsing still works.", encoding="utf-8")
    limits = ParseLimits(max_member_bytes=10 * MiB, isolated=False)
    report = update_index(tmp_path / "index", add=[docs], rebuild=True, embedder=embedder,
                          progress=False, limits=limits)
    assert report.added == 1 and len(report.skipped) == 1
    assert report.skipped[0].path == str(bomb)
    assert report.skipped[0].reason.startswith("unpacked size over the 10 MB limit (")


def test_the_cli_takes_the_limits_and_refuses_bad_ones(tmp_path):
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "nested.html").write_text(deep_html(20), encoding="utf-8")
    (docs / "flat.txt").write_text("Flat files are fine.", encoding="utf-8")

    def spanqa(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "spanqa.api.cli", "index", "build", str(docs),
                               "--index", str(tmp_path / "index"), *args], cwd=repo,
                              capture_output=True, text=True)

    done = spanqa("--max-depth", "10", "--parse-timeout", "20")
    assert done.returncode == 0, done.stderr
    assert "nested.html: HTML nested deeper than the 10-level limit" in done.stdout
    assert "documents in index           1" in done.stdout
    refused = spanqa("--parse-timeout", "0")
    assert refused.returncode == 2
    assert "spanqa: error: seconds must be positive, got 0.0" in refused.stderr

    parser = argparse.ArgumentParser()
    add_limit_arguments(parser)  # what `spanqa index build|add` and `spanqa serve` take
    limits = limits_from_args(parser.parse_args(
        ["--max-records", "7", "--max-reply-mb", "3", "--parse-budget", "45"]))
    assert (limits.max_records, limits.max_reply_bytes, limits.job_seconds) == (7, 3 * MiB, 45)
    with pytest.raises(ValueError, match="job_seconds must be positive"):
        limits_from_args(parser.parse_args(["--parse-budget", "0"]))
