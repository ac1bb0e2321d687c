"""Files to Documents: every format, every way a file can be bad, ids, order."""

from __future__ import annotations

import json
import os
import random
import zipfile
from pathlib import Path

import pytest
from conftest import squad_file

from spanqa.index.records import Document, Skipped
from spanqa.indexer import formats as readers
from spanqa.indexer.formats import (
    MAX_FILE_BYTES,
    SUPPORTED,
    content_hash,
    document_id,
    iter_documents,
    read_file,
)
from spanqa.indexer.limits import MiB, ParseLimits

# --------------------------------------------------------------------------------------
# helpers


def check_document(doc: Document) -> None:
    """What every Document must satisfy, whatever its format."""
    assert doc.text.strip()
    assert doc.content_hash == content_hash(doc.text)
    assert doc.path == str(Path(doc.path).resolve())
    assert doc.metadata["path"] == doc.path
    assert doc.mtime == pytest.approx(os.stat(doc.path).st_mtime)
    assert len(doc.id) == 16
    previous_end = 0
    for section in doc.sections:
        assert previous_end <= section.start < section.end <= len(doc.text)
        previous_end = section.end


def only_document(path: Path, **kwargs) -> Document:
    results = read_file(path, **kwargs)
    assert len(results) == 1, results
    assert isinstance(results[0], Document), results
    check_document(results[0])
    return results[0]


def only_skipped(path: Path, **kwargs) -> Skipped:
    results = read_file(path, **kwargs)
    assert len(results) == 1 and isinstance(results[0], Skipped), results
    assert results[0].path == str(path)
    return results[0]


def make_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    if title:
        pdf.set_title(title)
    pdf.output(str(path))
    return path


# --------------------------------------------------------------------------------------
# plain text and markdown


def test_utf8_text_keeps_text_and_normalises_newlines(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes("  Line one\r\nLine two\rLine three — ünïcode\n\n".encode())
    doc = only_document(path)
    assert doc.text == "  Line one\nLine two\nLine three — ünïcode\n\n"
    assert doc.title == "notes"
    assert doc.sections == []
    assert doc.id == document_id(str(path))


def test_utf8_bom_is_not_part_of_the_text(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfCaf\xc3\xa9 au lait\n")
    assert only_document(path).text == "Café au lait\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-16-le"])
def test_utf16_with_bom(tmp_path, encoding):
    text = "Grüße aus Köln — 東京 and naïve text.\nSecond line.\n"
    path = tmp_path / "wide.txt"
    bom = {"utf-16": b"", "utf-16-be": b"\xfe\xff", "utf-16-le": b"\xff\xfe"}[encoding]
    path.write_bytes(bom + text.encode(encoding))
    assert only_document(path).text == text


def test_cp1252_text(tmp_path):
    text = "Café déjà vu: the naïve façade cost 5€ — “quoted”.\nÜber straße.\n"
    path = tmp_path / "legacy.txt"
    path.write_bytes(text.encode("cp1252"))
    assert only_document(path).text == text


def test_short_cp1252_text_is_not_read_as_an_exotic_code_page(tmp_path):
    path = tmp_path / "short.txt"
    path.write_bytes("Café déjà vu\n".encode("cp1252"))
    assert only_document(path).text == "Café déjà vu\n"


def test_markdown_title_from_first_level_one_heading(tmp_path):
    text = "Intro line\n\n```bash\n# not a title\n```\n\n## Sub\n\n# The Title #\n\nBody *text*.\n"
    path = tmp_path / "guide.md"
    path.write_text(text, encoding="utf-8")
    doc = only_document(path)
    assert doc.title == "The Title"
    assert doc.text == text  # markdown is kept as it is


def test_markdown_without_heading_uses_file_stem(tmp_path):
    path = tmp_path / "plain-notes.markdown"
    path.write_text("## only a level-two heading\n\ntext\n", encoding="utf-8")
    assert only_document(path).title == "plain-notes"


def test_binary_content_with_txt_extension_is_skipped(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096)) + b"\x00")
    assert only_skipped(path).reason == "binary file"


def test_control_characters_without_nul_are_binary(tmp_path):
    path = tmp_path / "controls.txt"
    path.write_bytes(bytes(range(1, 9)) * 50 + b"some text")
    assert only_skipped(path).reason == "binary file"


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n  "])
def test_empty_and_blank_files_are_skipped(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    assert only_skipped(path).reason == "empty document"


# --------------------------------------------------------------------------------------
# HTML

HTML = """<!DOCTYPE html>
<html><head>
  <title>  The   Page  Title </title>
  <meta charset="utf-8">
  <style>body { color: red; } .secret-style {}</style>
  <script>var secretScript = 1;</script>
</head>
<body>
  <!-- secret comment -->
  <h1>Main heading</h1>
  <p>First <b>bold</b>   paragraph
     spans lines.</p>
  <div>Div text<br>after break</div>
  <ul><li>One</li><li>Two</li></ul>
  <script>document.write("secretInline")</script>
  <noscript>secret noscript</noscript>
  <template><p>secret template</p></template>
  <p hidden>secret hidden</p>
  <div style="display: none">secret display none</div>
  <table><tr><td>Cell A</td><td>Cell B</td></tr><tr><td>Cell C</td></tr></table>
  <pre>code  line 1
  indented line 2</pre>
  <p></p><p>   </p>
  <p>Last&nbsp;one &amp; done.</p>
</body></html>
"""


def test_html_visible_text_in_blocks(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(HTML, encoding="utf-8")
    doc = only_document(path)
    assert doc.title == "The Page Title"
    assert "secret" not in doc.text.lower()
    assert "color" not in doc.text
    assert doc.text.split("\n\n") == [
        "Main heading",
        "First bold paragraph spans lines.",
        "Div text",
        "after break",
        "One",
        "Two",
        "Cell A Cell B",
        "Cell C",
        "code  line 1\n  indented line 2",
        "Last\xa0one & done.",
    ]
    assert "\n\n\n" not in doc.text


def test_html_title_falls_back_to_h1_then_stem(tmp_path):
    with_h1 = tmp_path / "a.htm"
    with_h1.write_text("<body><h1>Heading <i>One</i></h1><p>text</p></body>", encoding="utf-8")
    assert only_document(with_h1).title == "Heading One"
    bare = tmp_path / "bare-page.html"
    bare.write_text("<p>just text</p>", encoding="utf-8")
    doc = only_document(bare)
    assert (doc.title, doc.text) == ("bare-page", "just text")


def test_html_encoding_from_meta_charset(tmp_path):
    path = tmp_path / "legacy.html"
    html = '<html><head><meta charset="windows-1252"><title>Café</title></head>'
    html += "<body><p>Crème brûlée — 5€</p></body></html>"
    path.write_bytes(html.encode("cp1252"))
    doc = only_document(path)
    assert (doc.title, doc.text) == ("Café", "Crème brûlée — 5€")


def test_html_with_only_scripts_is_empty(tmp_path):
    path = tmp_path / "app.html"
    path.write_text("<html><head><title>App</title></head><body><script>x()</script></body>")
    assert only_skipped(path).reason == "empty document"


def nested_html(depth: int) -> str:
    return f"<html><body>{'<div>' * depth}bottom{'</div>' * depth}<p>after</p></body></html>"


@pytest.mark.parametrize("depth", [1_500, 100_000])
def test_html_nested_past_the_depth_limit_is_skipped_not_cut(tmp_path, depth):
    path = tmp_path / "deep.html"
    path.write_text(nested_html(depth), encoding="utf-8")
    assert only_skipped(path).reason == "HTML nested deeper than the 1024-level limit"


def test_html_deeper_than_the_parser_goes_is_skipped_whatever_the_limit(tmp_path):
    path = tmp_path / "deep.html"
    path.write_text(nested_html(3_000), encoding="utf-8")  # libxml2 stops at 2048, silently
    reason = only_skipped(path, limits=ParseLimits(max_depth=5_000)).reason
    assert reason == "HTML nested deeper than the 2047-level limit"


def test_html_within_the_depth_limit_keeps_every_level(tmp_path):
    path = tmp_path / "deep.html"
    path.write_text(nested_html(1_000), encoding="utf-8")
    assert only_document(path).text == "bottom\n\nafter"


def test_html_text_node_over_10_mb_is_kept_whole(tmp_path):
    path = tmp_path / "long.html"
    words = "word " * 2_500_000  # one 12.5 MB text node: libxml2 cuts those without huge_tree
    path.write_text(f"<title>Long</title><p>{words}</p><p>end</p>", encoding="utf-8")
    assert only_document(path, max_bytes=20 * MiB).text == words.strip() + "\n\nend"


# --------------------------------------------------------------------------------------
# PDF


def test_pdf_pages_become_sections(tmp_path):
    pages = [f"Page {n} talks about topic {n}.\nA second line on page {n}." for n in (1, 2, 3)]
    path = make_pdf(tmp_path / "report.pdf", pages, title="Quarterly Report")
    doc = only_document(path)
    assert doc.title == "Quarterly Report"
    assert [s.page for s in doc.sections] == [1, 2, 3]
    for section, page in zip(doc.sections, pages, strict=True):
        page_text = doc.text[section.start : section.end]
        assert page_text == page  # fpdf2 + PDFium round-trip this text exactly
    assert doc.text == "\n\n".join(pages)
    assert doc.metadata["pages"] == 3


def test_pdf_blank_page_has_no_section_and_page_numbers_stay_true(tmp_path):
    path = make_pdf(tmp_path / "gappy.pdf", ["First page.", "", "Third page."])
    doc = only_document(path)
    assert doc.title == "gappy"
    assert [(doc.text[s.start : s.end], s.page) for s in doc.sections] == [
        ("First page.", 1),
        ("Third page.", 3),
    ]


def test_pdf_without_text_is_skipped_as_scanned(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)
    path = tmp_path / "scan.pdf"
    pdf.output(str(path))
    assert only_skipped(path).reason == "no extractable text (scanned PDF?)"


def test_corrupt_pdf_is_skipped(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(bytes(random.Random(1).randrange(256) for _ in range(2048)))
    assert only_skipped(path).reason.startswith("unreadable PDF (")


def test_truncated_pdf_is_skipped(tmp_path):
    good = make_pdf(tmp_path / "good.pdf", ["Some text here."])
    path = tmp_path / "truncated.pdf"
    path.write_bytes(good.read_bytes()[:300])
    assert isinstance(read_file(path)[0], Skipped)


def test_password_protected_pdf_is_skipped_but_owner_only_opens(tmp_path):
    from fpdf import FPDF

    def encrypted(name: str, user_password: str | None) -> Path:
        pdf = FPDF()
        pdf.set_font("helvetica", size=12)
        pdf.add_page()
        pdf.cell(0, 10, "Protected words")
        pdf.set_encryption(owner_password="owner", user_password=user_password)
        pdf.output(str(tmp_path / name))
        return tmp_path / name

    locked = encrypted("locked.pdf", "secret")
    assert only_skipped(locked).reason == "encrypted PDF (password required)"
    assert only_document(encrypted("open.pdf", None)).text == "Protected words"


# --------------------------------------------------------------------------------------
# DOCX


def make_docx(path: Path, *, core_title: str = "") -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = core_title
    document.add_paragraph("Opening words.")
    document.add_heading("Chapter One", level=1)
    document.add_paragraph("")
    document.add_paragraph("Body of chapter one.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Name"
    table.cell(0, 1).text = "Value"
    table.cell(1, 0).merge(table.cell(1, 1)).text = "Merged cell"
    document.add_paragraph("After the table.")
    document.save(str(path))
    return path


def test_docx_paragraphs_and_table_cells(tmp_path):
    doc = only_document(make_docx(tmp_path / "memo.docx", core_title="The Memo"))
    assert doc.title == "The Memo"
    assert doc.text.split("\n\n") == [
        "Opening words.",
        "Chapter One",
        "Body of chapter one.",
        "Name",
        "Value",
        "Merged cell",
        "After the table.",
    ]


def test_docx_title_from_first_heading(tmp_path):
    assert only_document(make_docx(tmp_path / "memo.docx")).title == "Chapter One"


def test_corrupt_docx_is_skipped(tmp_path):
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04 this is not really a zip file" * 10)
    assert only_skipped(path).reason.startswith("unreadable DOCX (")


def long_docx(path: Path) -> Path:
    """A DOCX whose word/document.xml unpacks to about 1.5 MB."""
    import docx

    document = docx.Document()
    document.add_paragraph("word " * 300_000)
    document.save(str(path))
    return path


@pytest.mark.parametrize(("limits", "reason"), [
    (ParseLimits(max_member_bytes=MiB), "unpacked size over the 1 MB limit (word/document.xml "
                                        "declares "),
    (ParseLimits(max_unpacked_bytes=MiB), "unpacked size of all members over the 1 MB limit"),
])
def test_docx_over_the_unpacked_limits_is_skipped(tmp_path, limits, reason):
    path = long_docx(tmp_path / "long.docx")
    assert only_skipped(path, limits=limits).reason.startswith(reason)
    assert only_document(path).text.startswith("word word")


def test_docx_members_compressed_other_than_deflate_are_refused(tmp_path):
    source = make_docx(tmp_path / "memo.docx")
    path = tmp_path / "bzip2.docx"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as out:
        for item in src.infolist():  # bzip2 is inflated in one call, past any chunking
            method = zipfile.ZIP_BZIP2 if item.filename == "word/document.xml" else (
                zipfile.ZIP_DEFLATED)
            out.writestr(item.filename, src.read(item), compress_type=method)
    assert only_skipped(path).reason == ("compression method not allowed (word/document.xml: "
                                         "method 12; only stored and deflate)")


def test_docx_with_too_many_members_is_refused(tmp_path):
    path = tmp_path / "many.docx"
    with zipfile.ZipFile(path, "w") as out:
        for i in range(10_001):
            out.writestr(f"part{i}.xml", b"")
    assert only_skipped(path).reason == "too many archive members (10001; the limit is 10000)"


# --------------------------------------------------------------------------------------
# JSON and JSON lines


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


RECORDS = [
    {"id": "a", "title": "Alpha", "text": "Alpha text.", "metadata": {"lang": "en"}, "url": "u"},
    {"id": 7, "text": "Seven text."},
    {"id": "c", "title": "No text"},
    {"id": "d", "text": 42},
    {"id": "e", "text": "   "},
    {"text": "No id: keyed by position.", "metadata": {"url": "from-metadata"}, "url": "x"},
    "not an object",
    {"id": "a", "text": "Duplicate id."},
]


@pytest.mark.parametrize("layout", ["list", "records", "documents"])
def test_json_records(tmp_path, layout):
    value = RECORDS if layout == "list" else {layout: RECORDS}
    path = write_json(tmp_path / "corpus.json", value)
    results = read_file(path)
    docs = [r for r in results if isinstance(r, Document)]
    skipped = [r for r in results if isinstance(r, Skipped)]
    for doc in docs:
        check_document(doc)
    assert [d.text for d in docs] == ["Alpha text.", "Seven text.", "No id: keyed by position."]
    assert [d.id for d in docs] == [
        document_id(str(path), "a"),
        document_id(str(path), "7"),
        document_id(str(path), "5"),
    ]
    alpha = docs[0]
    assert alpha.title == "Alpha"
    assert alpha.metadata == {"lang": "en", "url": "u", "path": alpha.path, "record_id": "a"}
    assert docs[1].title == "corpus 7"
    assert docs[2].metadata["url"] == "from-metadata"  # the record's metadata wins
    assert all(s.path == str(path) for s in skipped)
    assert [s.reason for s in skipped] == [
        "record 2: no text field",
        "record 3: text is a int, not a string",
        "record 4: empty text",
        "record 6: record is a str, not an object",
        "record 7: duplicate id 'a' (first at record 0)",
    ]


def test_json_single_record(tmp_path):
    path = write_json(tmp_path / "one.json", {"id": "x", "title": "X", "text": "Only one."})
    doc = only_document(path)
    assert (doc.id, doc.title, doc.text) == (document_id(str(path), "x"), "X", "Only one.")


def test_invalid_json_file_is_skipped(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"id": "a", "text": "x"', encoding="utf-8")
    assert only_skipped(path).reason.startswith("invalid JSON: ")


def test_jsonl_bad_line_among_good_ones(tmp_path):
    lines = [
        json.dumps({"id": "1", "title": "One", "text": "First record."}),
        "",
        '{"id": "2", "text": "broken',
        json.dumps({"id": "3", "text": "Third record.\r\nwith CRLF kept", "source": "web"}),
        json.dumps({"id": "4"}),
        json.dumps({"id": "5", "text": "Line separator \u2028 inside a string."}),
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = read_file(path)
    assert [type(r).__name__ for r in results] == [
        "Document",
        "Skipped",
        "Document",
        "Skipped",
        "Document",
    ]
    first, bad_json, third, no_text, fifth = results
    assert first.text == "First record." and first.title == "One"
    assert third.text == "Third record.\r\nwith CRLF kept"
    assert third.metadata["source"] == "web"
    assert fifth.text == "Line separator \u2028 inside a string."
    assert bad_json.reason.startswith("line 3: invalid JSON")
    assert no_text.reason == "line 5: no text field"
    assert third.id == document_id(str(path), "3")


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_records_with_nan_or_infinity_are_skipped_alone(tmp_path, suffix):
    """Python's json reads NaN, Infinity, -Infinity (and 1e999 as inf); stored, they make the
    metadata invalid JSON for SQLite. Such a record is skipped naming the field; the rest load.
    The records are written by hand: json.dumps would not write these literals."""
    records = [
        '{"id": "a", "text": "Alpha.", "metadata": {"score": 1.5, "tags": ["x"]}}',
        '{"id": "n1", "text": "Beta.", "metadata": {"score": NaN}}',
        '{"id": 7, "text": "Gamma.", "metadata": {"scores": [1, {"low": -Infinity}]}}',
        '{"text": "Delta.", "weight": Infinity}',
        '{"id": "big", "text": "Epsilon.", "metadata": {"size": 1e999}}',
        '{"id": "e", "text": "NaN and Infinity inside a string are text.", "n": 2e10}',
    ]
    path = tmp_path / f"records{suffix}"
    body = "[" + ",\n".join(records) + "]" if suffix == ".json" else "\n".join(records)
    path.write_text(body, encoding="utf-8")
    results = read_file(path)
    where = ["record 1", "record 2", "record 3", "record 4"] if suffix == ".json" else [
        "line 2", "line 3", "line 4", "line 5"]
    assert [type(r).__name__ for r in results] == [
        "Document", "Skipped", "Skipped", "Skipped", "Skipped", "Document"]
    good, nan, minus_inf, inf, big, text = results
    assert nan.reason == (f"{where[0]}: record 'n1': metadata.score is NaN, which strict JSON "
                          "does not allow (no NaN or Infinity)")
    assert minus_inf.reason.startswith(f"{where[1]}: record 7: metadata.scores[1].low is "
                                       "-Infinity, which strict JSON does not allow")
    assert inf.reason.startswith(f"{where[2]}: weight is Infinity, which strict JSON")
    assert big.reason == (f"{where[3]}: record 'big': metadata.size is 1e999, beyond a float's "
                          "range (it would be stored as Infinity)")
    assert good.metadata["score"] == 1.5 and good.metadata["tags"] == ["x"]
    assert text.text == "NaN and Infinity inside a string are text." and text.metadata["n"] == 2e10
    for doc in (good, text):
        json.dumps(doc.metadata, allow_nan=False)  # what the index stores: strict JSON


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_file_over_the_record_limit_is_skipped_whole(tmp_path, suffix):
    """Each record is a Document, whatever its size: a file of many tiny ones is refused
    before any is built, naming the count; one at the limit loads. Blank lines are no
    records."""
    limits = ParseLimits(max_records=3)
    records = [json.dumps({"text": "a"}) for _ in range(4)]
    for count, name in ((4, "over"), (3, "at")):
        path = tmp_path / f"{name}{suffix}"
        body = records[:count]
        path.write_text("[" + ",".join(body) + "]" if suffix == ".json"
                        else "\n\n".join(body) + "\n", encoding="utf-8")
        results = read_file(path, limits=limits)
        if count == 4:
            assert results == [Skipped(str(path), "4 records, more than the 3-record limit")]
        else:
            assert [type(r) for r in results] == [Document] * 3


def test_a_squad_file_over_the_record_limit_is_skipped(tmp_path):
    articles = [{"title": f"A{i}", "paragraphs": [{"context": f"Context {i}.", "qas": []}]}
                for i in range(3)]
    path = write_json(tmp_path / "squad.json", {"version": "v2.0", "data": articles})
    assert only_skipped(path, limits=ParseLimits(max_records=2)).reason == (
        "3 records, more than the 2-record limit")
    assert len(read_file(path, limits=ParseLimits(max_records=3))) == 3


# --------------------------------------------------------------------------------------
# SQuAD


@pytest.fixture
def squad_sample() -> Path:
    return squad_file("sample-v1.1.json")


def test_squad_articles_become_documents_with_paragraph_sections(squad_sample):
    articles = json.loads(squad_sample.read_text(encoding="utf-8"))["data"]
    results = read_file(squad_sample)
    assert len(results) == len(articles) == 2
    for doc, article in zip(results, articles, strict=True):
        assert isinstance(doc, Document)
        check_document(doc)
        assert doc.title == article["title"].replace("_", " ")
        assert doc.id == document_id(str(squad_sample), article["title"])
        contexts = [p["context"] for p in article["paragraphs"]]
        assert len(doc.sections) == len(contexts)
        for section, context in zip(doc.sections, contexts, strict=True):
            assert doc.text[section.start : section.end] == context
            assert section.page is None
        assert doc.text == "\n\n".join(contexts)
        assert doc.metadata["source"] == "squad"


def test_squad_bad_article_is_skipped_alone(tmp_path):
    value = {
        "version": "1.1",
        "data": [
            {"title": "Good_One", "paragraphs": [{"context": "P1."}, {"context": "P2."}]},
            {"title": "Empty", "paragraphs": []},
        ],
    }
    good, bad = read_file(write_json(tmp_path / "squad.json", value))
    assert isinstance(good, Document) and good.title == "Good One"
    assert [good.text[s.start : s.end] for s in good.sections] == ["P1.", "P2."]
    assert bad == Skipped(str(tmp_path / "squad.json"), "article 1: no paragraph with a context")


# --------------------------------------------------------------------------------------
# limits, unsupported and missing files, unexpected errors


def test_too_large_file_is_skipped_without_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.txt"
    path.write_text("x" * 101, encoding="utf-8")

    def no_reading(*args, **kwargs):
        raise AssertionError("a too-large file must not be opened")

    monkeypatch.setattr(Path, "open", no_reading)
    assert only_skipped(path, max_bytes=100).reason == "too large (101 bytes > 100)"
    assert MAX_FILE_BYTES == 50 * 1024 * 1024


def test_file_at_the_limit_is_read(tmp_path):
    path = tmp_path / "fits.txt"
    path.write_text("x" * 100, encoding="utf-8")
    assert only_document(path, max_bytes=100).text == "x" * 100


def test_unsupported_and_missing(tmp_path):
    (tmp_path / "photo.PNG").write_bytes(b"\x89PNG")
    (tmp_path / "Makefile").write_text("all:\n")
    assert only_skipped(tmp_path / "photo.PNG").reason == "unsupported file type .png"
    assert only_skipped(tmp_path / "Makefile").reason == "unsupported file type (no extension)"
    missing = tmp_path / "nope.txt"
    assert list(iter_documents([missing])) == [Skipped(str(missing), "no such file or directory")]
    assert only_skipped(missing).reason.startswith("no such file")


def test_uppercase_extension_is_supported(tmp_path):
    path = tmp_path / "LOUD.TXT"
    path.write_text("Upper-case extension.", encoding="utf-8")
    assert only_document(path).text == "Upper-case extension."


def test_unexpected_error_becomes_skipped(tmp_path, monkeypatch):
    def explode(path, data, limits):
        raise RuntimeError("boom")

    monkeypatch.setitem(readers._READERS, ".txt", explode)
    path = tmp_path / "a.txt"
    path.write_text("text", encoding="utf-8")
    assert only_skipped(path).reason == "RuntimeError: boom"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_not_read(tmp_path):
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    assert only_skipped(path).reason == "not a regular file"


def test_supported_extensions_all_have_readers():
    assert set(SUPPORTED) == set(readers._READERS)


# --------------------------------------------------------------------------------------
# folders: one bad file never stops the rest; hidden files; order; ids


def build_folder(root: Path) -> Path:
    root.mkdir()
    (root / "b.txt").write_text("Bee text.", encoding="utf-8")
    (root / "a.md").write_text("# Ay\n\nAy text.", encoding="utf-8")
    (root / "sub").mkdir()
    (root / "sub" / "c.html").write_text("<title>See</title><p>See text.</p>", encoding="utf-8")
    make_pdf(root / "sub" / "d.pdf", ["Dee text."])
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (root / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 10)
    (root / "empty.txt").write_bytes(b"")
    (root / "huge.txt").write_text("h" * 5000, encoding="utf-8")
    (root / "data.xyz").write_text("whatever", encoding="utf-8")
    (root / ".hidden.txt").write_text("Hidden text.", encoding="utf-8")
    (root / ".git").mkdir()
    (root / ".git" / "config.txt").write_text("Git text.", encoding="utf-8")
    return root


def test_folder_reads_good_files_and_reports_bad_ones(tmp_path):
    root = build_folder(tmp_path / "corpus")
    results = list(iter_documents([root], max_bytes=1000))
    docs = [r for r in results if isinstance(r, Document)]
    reasons = {Path(r.path).name: r.reason for r in results if isinstance(r, Skipped)}
    assert [d.text for d in docs] == ["# Ay\n\nAy text.", "Bee text.", "See text.", "Dee text."]
    assert [d.title for d in docs] == ["Ay", "b", "See", "d"]
    assert reasons.keys() == {"binary.txt", "broken.pdf", "data.xyz", "empty.txt", "huge.txt"}
    assert reasons["binary.txt"] == "binary file"
    assert reasons["broken.pdf"].startswith("unreadable PDF")
    assert reasons["data.xyz"] == "unsupported file type .xyz"
    assert reasons["empty.txt"] == "empty document"
    assert reasons["huge.txt"] == "too large (5000 bytes > 1000)"
    assert not any("Hidden" in d.text or "Git" in d.text for d in docs)


def test_order_is_sorted_and_deterministic(tmp_path):
    root = build_folder(tmp_path / "corpus")
    names = [Path(r.path).name for r in iter_documents([root], max_bytes=1000)]
    assert names == [
        "a.md",
        "b.txt",
        "binary.txt",
        "broken.pdf",
        "data.xyz",
        "empty.txt",
        "huge.txt",
        "c.html",
        "d.pdf",
    ]
    again = [Path(r.path).name for r in iter_documents([root], max_bytes=1000)]
    assert again == names


def test_explicit_files_mixed_with_folders_and_duplicates_read_once(tmp_path):
    root = build_folder(tmp_path / "corpus")
    hidden = root / ".hidden.txt"
    results = list(iter_documents([root / "b.txt", str(root / "sub"), hidden, root / "sub"]))
    assert [Path(r.path).name for r in results] == ["b.txt", "c.html", "d.pdf", ".hidden.txt"]


def test_ids_are_stable_and_path_based(tmp_path, monkeypatch):
    root = build_folder(tmp_path / "corpus")
    first = [r.id for r in iter_documents([root]) if isinstance(r, Document)]
    second = [r.id for r in iter_documents([root]) if isinstance(r, Document)]
    assert first == second
    assert len(set(first)) == len(first)

    monkeypatch.chdir(root)
    relative = only_document(Path("b.txt"))
    assert relative.id == document_id(str(root / "b.txt")) == document_id("b.txt")
    assert relative.path == str((root / "b.txt").resolve())

    assert document_id("x.json", "1") != document_id("x.json", "2") != document_id("x.json")
    assert document_id("x.json") != document_id("y.json")
    assert len(document_id("x.json", "1")) == 16


def test_same_text_in_two_files_same_hash_different_ids(tmp_path):
    (tmp_path / "one.txt").write_text("Same words.", encoding="utf-8")
    (tmp_path / "two.txt").write_text("Same words.", encoding="utf-8")
    one, two = iter_documents([tmp_path])
    assert one.content_hash == two.content_hash == content_hash("Same words.")
    assert one.id != two.id


def test_content_hash_is_sha256_hex():
    import hashlib

    assert content_hash("héllo") == hashlib.sha256("héllo".encode()).hexdigest()


# --------------------------------------------------------------------------------------
# HTML: the page's content, not its site chrome

SPHINX_LIKE = """<!DOCTYPE html><html><head><title>timeit - Python docs</title></head><body>
<div class="related" role="navigation"><ul><li><a href="index.html">index</a></li>
  <li><a href="next.html">next</a> |</li><li>Python &#187; 3.11 Documentation &#187;</li></ul></div>
<div class="document"><div class="body" role="main">
  <section id="timeit"><h1>timeit <a class="headerlink" href="#timeit">&#182;</a></h1>
  <p>This module times small bits of code.</p>
  <h2>Basic Examples<a href="#basic">#</a></h2><p>Run it from the shell.</p>
  <div class="header">Kept: a class name inside the content says nothing.</div>
  </section></div>
<div class="sphinxsidebar" role="navigation"><h3>Previous topic</h3><p>profile</p>
  <h3>This Page</h3><ul><li><a href="bugs.html">Report a Bug</a></li></ul></div></div>
<div class="footer">&#169; Copyright 2001-2026. Last updated on Oct 07. Created using Sphinx.</div>
</body></html>"""

DOCBOOK_LIKE = """<html><head><title>Chapter 6. APT</title></head><body>
<div id="banner"><a href="/get/"><span>Download the ebook</span></a></div>
<ul class="docnav top"><li><a href="prev.html">Prev</a></li>
<li><a href="next.html">Next</a></li></ul>
<div class="chapter"><h2>Chapter 6. APT</h2><div class="toc"><dl><dt>6.1. Sources</dt></dl></div>
<p>APT installs packages.</p>
<div class="sidebar"><p>TIP Files in /etc/apt/sources.list.d/</p></div></div>
<nav><a href="/">Home</a></nav>
<ul class="docnav"><li><a href="prev.html">Prev</a></li><li>Up</li><li>Home</li></ul>
</body></html>"""


def test_html_marked_main_content_is_read_alone_without_permalinks(tmp_path):
    path = tmp_path / "timeit.html"
    path.write_text(SPHINX_LIKE, encoding="utf-8")
    doc = only_document(path)
    assert doc.text.split("\n\n") == [
        "timeit", "This module times small bits of code.", "Basic Examples",
        "Run it from the shell.", "Kept: a class name inside the content says nothing.",
    ]


def test_html_without_a_marked_content_leaves_out_navigation_banners_and_tocs(tmp_path):
    path = tmp_path / "apt.html"
    path.write_text(DOCBOOK_LIKE, encoding="utf-8")
    doc = only_document(path)
    assert doc.text.split("\n\n") == [
        "Chapter 6. APT", "APT installs packages.", "TIP Files in /etc/apt/sources.list.d/",
    ]  # DocBook's "sidebar" boxes are content; its docnav, banner and toc are not


def test_html_with_several_articles_reads_them_all_without_the_chrome(tmp_path):
    path = tmp_path / "blog.html"
    path.write_text("<html><body><header>My Blog</header><article><p>First post.</p>"
                    "<footer>by Ann</footer></article><article><p>Second post.</p></article>"
                    "<footer>2026 My Blog</footer><div class='cookie-banner'>We use cookies"
                    "</div></body></html>", encoding="utf-8")
    assert only_document(path).text.split("\n\n") == ["First post.", "by Ann", "Second post."]
