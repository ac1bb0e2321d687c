"""PDF text as a person reads it: real PDFs written by fpdf2, read by indexer/pdf_text.py."""

from collections import Counter

import pytest

from spanqa.indexer.formats import read_file
from spanqa.indexer.pdf_text import join_broken_words, read_pdf, running_lines

fpdf = pytest.importorskip("fpdf")


def manual(pages: list[str], *, first_printed: int = 1) -> bytes:
    """A manual whose every page has a running header and a footer with its printed number."""
    pdf = fpdf.FPDF()
    pdf.set_font("helvetica", size=11)
    pdf.set_auto_page_break(False)
    for offset, body in enumerate(pages):
        pdf.add_page()
        pdf.cell(0, 8, f"Acme Widget Manual {first_printed + offset} / {len(pages)}",
                 new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 8, body)
        pdf.set_y(-20)
        pdf.cell(0, 8, f"- {first_printed + offset} -")
    return bytes(pdf.output())


BODIES = [
    "Install the widget on a flat surface.",
    "Connect the blue cable to port A.\nThen switch the power on.",
    "The status light turns green when the widget is ready.",
    "Clean the filter every month with warm water.",
    "Call support if the light blinks red.",
]


def test_running_headers_and_page_numbers_leave_the_text_but_stay_as_labels():
    pdf = read_pdf(manual(BODIES, first_printed=11))
    assert [p.text for p in pdf.pages] == BODIES
    assert [p.number for p in pdf.pages] == [1, 2, 3, 4, 5]
    assert [p.label for p in pdf.pages] == ["11", "12", "13", "14", "15"]


def test_an_indexed_pdf_cites_the_printed_page_numbers(tmp_path):
    path = tmp_path / "manual.pdf"
    path.write_bytes(manual(BODIES, first_printed=11))
    [doc] = read_file(path)
    assert "Acme Widget Manual" not in doc.text and "- 12 -" not in doc.text
    assert [doc.text[s.start:s.end] for s in doc.sections] == BODIES
    assert doc.metadata["page_labels"] == {str(n): str(n + 10) for n in range(1, 6)}


def test_lines_that_repeat_on_too_few_pages_are_text():
    pdf = read_pdf(manual(BODIES[:2]))  # two pages: a repeated line proves nothing yet
    assert all(p.text.startswith("Acme Widget Manual") for p in pdf.pages)


def test_a_page_of_nothing_but_repeated_lines_keeps_them():
    pages = [f"Page {n} talks about topic {n}.\nA second line on page {n}." for n in (1, 2, 3)]
    pdf = fpdf.FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    assert [p.text for p in read_pdf(bytes(pdf.output())).pages] == pages


def test_words_placed_one_by_one_keep_their_spaces():
    """Typesetters often place each word without a space character; the text must not
    glue them ("Usersfamiliarwithmutt")."""
    pdf = fpdf.FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    x = 10.0
    for word in ["Users", "familiar", "with", "mutt", "pick", "up", "quickly"]:
        pdf.text(x, 20, word)
        x += pdf.get_string_width(word) + 2.5
    assert read_pdf(bytes(pdf.output())).pages[0].text == "Users familiar with mutt pick up quickly"


def test_words_broken_at_line_ends_are_joined():
    pdf = fpdf.FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 10, "We ran an experi-\nment on a well-\nknown system by Jean-\n"
                          "Pierre.\nThe well-known system works.")
    text = read_pdf(bytes(pdf.output())).pages[0].text
    assert "experiment on a well-known system by Jean-Pierre." in text


@pytest.mark.parametrize(("text", "seen", "joined"), [
    ("experi-\nment", {}, "experiment"),
    ("experi\ufffement", {}, "experiment"),
    ("experi\xadment", {"experi-ment": 1}, "experiment"),  # marked soft: always joined
    ("well-\nknown", {"well-known": 2}, "well-known"),
    ("well\ufffeknown", {"well-known": 2, "wellknown": 1}, "wellknown"),
    ("Jean-\nPierre", {}, "Jean-Pierre"),
    ("an x-ray", {}, "an x-ray"),
    ("page 3-\n4", {}, "page 3-\n4"),
])
def test_join_broken_words(text, seen, joined):
    assert join_broken_words(text, Counter(seen)) == joined


def test_running_lines_are_found_at_page_edges_only():
    pages = [[f"Guide {n}", *(f"line {k} of page {chr(96 + n)}" for k in range(4)),
              f"the same line {n}", *(f"more {k} on {chr(96 + n)}" for k in range(4)), str(n)]
             for n in range(1, 6)]
    found = running_lines(pages)
    assert found == {"guide #", "#"}  # "the same line #" recurs, but inside the page
