"""PDF text extractors compared on real PDFs of several producers: real-word share, glued
words, running headers left in, broken words left in, and time per page.

The PDFs come from Debian packages and the tools that typeset them (install with
`apt-get install debian-reference-en texlive-latex-base-doc groff libreoffice-writer-nogui
ocrmypdf tesseract-ocr-eng wamerican`); `--prepare` builds the ones made here into
data/bench/pdfs/: a man page typeset by groff (which hyphenates), a chapter of the
Debian Reference printed by LibreOffice, and a scan of groff's pages (rendered to images)
given a text layer by Tesseract through OCRmyPDF. Each PDF comes with its source text, and
a token counts as a real word when the source or the system dictionary has it: a word
glued to its neighbour ("Usersfamiliarwithmutt") is in neither.

Extractors: pypdf's `extract_text` (what SpanQA used before), PDFium's raw text
(pypdfium2), and SpanQA's reader (PDFium, then indexer/pdf_text.py's clean-up). Timings
are medians of `--rounds` runs, the extractors taking turns.

    python bench/pdf_text.py --prepare      # -> bench/results/pdf-text.json
"""

from __future__ import annotations

import argparse
import gzip
import html
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO.parent))
sys.path.insert(0, str(REPO))

from bench.machine import describe, label  # noqa: E402
from spanqa.indexer.pdf_text import page_lines, read_pdf, running_lines, shape  # noqa: E402

WORK = REPO / "data" / "bench" / "pdfs"
DICTIONARY = Path("/usr/share/dict/words")
REFERENCE = Path("/usr/share/debian-reference")
LATEX = Path("/usr/share/doc/texlive-doc/latex/base")
WORD = re.compile(r"[^\W\d_]+")


def tag_text(markup: str) -> str:
    """Visible words of HTML, roughly: enough to know which words the document has."""
    markup = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", markup)
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


def read_source(path: Path) -> str:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = data.decode("utf-8", "replace")
    return tag_text(text) if ".htm" in path.name else text


def prepare() -> None:
    """Build the PDFs made here (needs groff, LibreOffice, OCRmyPDF, Tesseract)."""
    WORK.mkdir(parents=True, exist_ok=True)
    man = WORK / "groff-bash.pdf"
    if not man.exists():
        source = gzip.decompress(Path("/usr/share/man/man1/bash.1.gz").read_bytes())
        pdf = subprocess.run(["groff", "-man", "-Tpdf"], input=source, capture_output=True,
                             check=True).stdout
        man.write_bytes(pdf)
    office = WORK / "libreoffice-ch01.pdf"
    if not office.exists():
        subprocess.run(["soffice", "--headless", "--convert-to", "pdf:writer_web_pdf_Export",
                        "--outdir", str(WORK), str(REFERENCE / "ch01.en.html")],
                       check=True, capture_output=True, timeout=600)
        (WORK / "ch01.en.pdf").rename(office)
    scan = WORK / "ocr-groff-bash.pdf"
    if not scan.exists():
        import pypdfium2 as pdfium

        images = WORK / "scan-images.pdf"
        document = pdfium.PdfDocument(str(man))
        pages = [document[i].render(scale=200 / 72).to_pil().convert("L") for i in range(8)]
        pages[0].save(images, save_all=True, append_images=pages[1:], resolution=200)
        subprocess.run(["ocrmypdf", "--quiet", "--output-type", "pdf", str(images), str(scan)],
                       check=True, timeout=1200)
        images.unlink()


def corpus() -> list[dict]:
    """(name, producer, PDF, its source files) for the PDFs present on this machine."""
    bash_man = [Path("/usr/share/man/man1/bash.1.gz")]
    items = [
        ("debian-reference", "DBLaTeX + xdvipdfmx", REFERENCE / "debian-reference.en.pdf",
         sorted(REFERENCE.glob("*.en.html"))),
        ("latex-clsguide", "LaTeX (pdfTeX)", LATEX / "clsguide.pdf", [LATEX / "clsguide.tex.gz"]),
        ("latex-fntguide", "LaTeX (pdfTeX)", LATEX / "fntguide.pdf", [LATEX / "fntguide.tex.gz"]),
        ("groff-bash", "groff (gropdf)", WORK / "groff-bash.pdf", bash_man),
        ("libreoffice-ch01", "LibreOffice Writer", WORK / "libreoffice-ch01.pdf",
         [REFERENCE / "ch01.en.html"]),
        ("ocr-groff-bash", "scan + Tesseract text layer (OCRmyPDF)", WORK / "ocr-groff-bash.pdf",
         bash_man),
    ]
    return [{"name": n, "producer": p, "pdf": pdf, "sources": s} for n, p, pdf, s in items
            if pdf.exists() and all(f.exists() for f in s)]


def pypdf_pages(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages]


def pdfium_pages(data: bytes) -> list[str]:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(data)
    try:
        return ["\n".join(page_lines(document, i)) for i in range(len(document))]
    finally:
        document.close()


def spanqa_pages(data: bytes) -> list[str]:
    return [page.text for page in read_pdf(data).pages]


EXTRACTORS: dict[str, Callable[[bytes], list[str]]] = {
    "pypdf": pypdf_pages, "pdfium raw": pdfium_pages, "spanqa": spanqa_pages}


def measure(pages: list[str], known: set[str], running: set[str]) -> dict:
    """Word counts and the faults a reader of the text would see."""
    tokens = [t for page in pages for t in WORD.findall(page)]
    real = sum(t.lower() in known for t in tokens)
    lines = [line for page in pages for line in page.splitlines() if line.strip()]
    return {
        "tokens": len(tokens),
        "real_word_share": real / max(1, len(tokens)),
        "tokens_16_letters_or_more": sum(len(t) >= 16 and t.lower() not in known
                                         for t in tokens),
        "running_lines_left": sum(shape(line) in running for line in lines),
        "broken_words_left": sum(len(re.findall(r"[^\W\d_](?:-\n|[\x02\xad\ufffe])[a-z]", page))
                                 for page in pages),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare", action="store_true", help="build the PDFs made here first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default="pdf-text")
    args = parser.parse_args()
    if args.prepare:
        prepare()
    dictionary = {w.strip().lower() for w in DICTIONARY.read_text(errors="replace").split()}
    machine = describe()
    rows = []
    for item in corpus():
        data = item["pdf"].read_bytes()
        known = dictionary | {w.lower() for f in item["sources"]
                              for w in WORD.findall(read_source(f))}
        raw = pdfium_pages(data)
        running = running_lines([page.split("\n") for page in raw])
        times: dict[str, list[float]] = {name: [] for name in EXTRACTORS}
        texts: dict[str, list[str]] = {}
        for _ in range(args.rounds):
            for name, extract in EXTRACTORS.items():
                began = time.perf_counter()
                texts[name] = extract(data)
                times[name].append(time.perf_counter() - began)
        for name in EXTRACTORS:
            seconds = statistics.median(times[name])
            rows.append({"pdf": item["name"], "producer": item["producer"], "extractor": name,
                         "pages": len(raw), "ms_per_page": 1000 * seconds / max(1, len(raw)),
                         **measure(texts[name], known, running)})
    caption = label(machine)
    print(f"PDF text by extractor ({caption}; medians of {args.rounds} runs)\n")
    head = (f"{'pdf':18} {'extractor':11} {'pages':>5} {'tokens':>7} {'real':>6} "
            f"{'glued16':>7} {'running':>7} {'broken':>6} {'ms/page':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['pdf']:18} {r['extractor']:11} {r['pages']:5d} {r['tokens']:7d} "
              f"{100 * r['real_word_share']:5.1f}% {r['tokens_16_letters_or_more']:7d} "
              f"{r['running_lines_left']:7d} {r['broken_words_left']:6d} {r['ms_per_page']:8.2f}")
    out = REPO / "bench" / "results" / f"{args.output}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rounds": args.rounds, "rows": rows},
                              indent=2) + "\n")
    print(f"\nwrote {out}")
    if shutil.which("soffice") is None:
        print("(LibreOffice is not installed: its PDF was not made)")


if __name__ == "__main__":
    main()
