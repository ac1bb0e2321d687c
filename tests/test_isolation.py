"""Hostile files parsed under limits in the parse worker: zip bombs, deep pages, files that
take too long, workers that crash or run out of memory, builds cancelled mid-file."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from indexer import store
from indexer.build import update_index
from indexer.embedding import Embedder
from indexer.isolation import Cancelled, IsolatedReader
from indexer.layout import IndexDir
from indexer.limits import MiB, ParseLimits
from indexer.readers import read_file
from indexer.records import Document, Skipped
from retriever.search import Retriever

# A worker that misbehaves on purpose for files named hang* or crash*, and is the real
# parse worker for every other file.
MISBEHAVING_WORKER = """
import os, signal, sys, time
import indexer.readers as readers
real = readers.read_file
def read_file(path, **kwargs):
    name = os.path.basename(str(path))
    if name.startswith("hang"):
        time.sleep(600)
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return real(path, **kwargs)
readers.read_file = read_file
from indexer.parse_worker import main
sys.exit(main())
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


def misbehaving(tmp_path: Path, limits: ParseLimits) -> IsolatedReader:
    script = tmp_path / "misbehaving_worker.py"
    script.write_text(MISBEHAVING_WORKER, encoding="utf-8")
    return IsolatedReader(limits, command=[sys.executable, str(script)])


def deep_html(depth: int) -> str:
    return f"<html><body>{'<div>' * depth}bottom{'</div>' * depth}<p>after</p></body></html>"


def big_html(paragraphs: int) -> str:
    """A page that takes lxml and the text walk seconds: many small elements."""
    rows = "".join(f"<div><p>Paragraph {i} has <b>bold</b> and <a href='#{i}'>a link</a>.</p>"
                   "</div>" for i in range(paragraphs))
    return f"<html><head><title>Big</title></head><body>{rows}</body></html>"


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
    docs.mkdir()
    (docs / "a-first.txt").write_text("Alpha wombats live in the first file.", encoding="utf-8")
    (docs / "b-slow.html").write_text(big_html(100_000), encoding="utf-8")  # ~2 s here
    (docs / "c-last.txt").write_text("Gamma platypus lives in the last file.", encoding="utf-8")
    report = update_index(tmp_path / "index", add=[docs], rebuild=True, embedder=embedder,
                          progress=False, limits=ParseLimits(seconds=0.3))
    assert report.skipped == [Skipped(str(docs / "b-slow.html"), "took longer than 0.3 s")]
    assert report.added == 2
    db = store.open_db(IndexDir(tmp_path / "index").current())
    assert sorted(row["title"] for row in db["documents"].rows) == ["a-first", "c-last"]


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
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kept.txt").write_text("The first generation has this file.", encoding="utf-8")
    index = tmp_path / "index"
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False)
    live = IndexDir(index).current()
    (docs / "slow.html").write_text(big_html(100_000), encoding="utf-8")
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        with pytest.raises(Cancelled, match="while a file was being parsed"):
            update_index(index, add=[docs / "slow.html"], embedder=embedder, progress=False,
                         cancelled=cancel.is_set, limits=ParseLimits(seconds=60))
    finally:
        timer.cancel()
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
        return subprocess.run([sys.executable, "-m", "api.cli", "index", "build", str(docs),
                               "--index", str(tmp_path / "index"), *args], cwd=repo,
                              capture_output=True, text=True)

    done = spanqa("--max-depth", "10", "--parse-timeout", "20")
    assert done.returncode == 0, done.stderr
    assert "nested.html: HTML nested deeper than the 10-level limit" in done.stdout
    assert "documents in index           1" in done.stdout
    refused = spanqa("--parse-timeout", "0")
    assert refused.returncode == 2
    assert "spanqa: error: seconds must be positive, got 0.0" in refused.stderr
