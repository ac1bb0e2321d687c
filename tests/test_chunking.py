"""Chunking documents into passages: exact offsets, packing, windows, sections, stable ids."""

from __future__ import annotations

import json
import random
import re
import unicodedata
from itertools import pairwise

import pytest
from conftest import squad_file

from spanqa.index.records import Document, Passage, Section
from spanqa.indexer.chunking import (
    ChunkConfig,
    chunk_document,
    count_words,
    passage_id,
    sentence_spans,
)


def make_document(
    text: str, sections: list[Section] | None = None, doc_id: str = "doc"
) -> Document:
    return Document(
        id=doc_id, path=f"/data/{doc_id}.txt", title=f"Title of {doc_id}", text=text,
        content_hash="", sections=sections or [],
    )


def paragraph(n_words: int, tag: str = "w") -> str:
    """n distinct words without sentence ends: only word boundaries to cut at."""
    return " ".join(f"{tag}{i}" for i in range(n_words))


def sentences_paragraph(n_sentences: int, seed: int = 0) -> str:
    """Sentences of 6 to 14 words, each starting with a capital and ending with a period."""
    rng = random.Random(seed)
    return " ".join(
        "Sentence " + " ".join(f"s{k}w{i}" for i in range(rng.randint(5, 13))) + "."
        for k in range(n_sentences)
    )


def sections_for(parts: list[str], sep: str = "\n\n", pages: bool = False) -> tuple[str, list]:
    """Join parts with sep and give each its own Section (pages numbered from 1 if asked)."""
    sections, offset = [], 0
    for number, part in enumerate(parts, start=1):
        sections.append(Section(offset, offset + len(part), number if pages else None))
        offset += len(part) + len(sep)
    return sep.join(parts), sections


def assert_valid(document: Document, passages: list[Passage], config: ChunkConfig) -> None:
    """The invariants every chunking must satisfy."""
    text = document.text
    sections = document.sections or [Section(0, len(text))]
    assert [p.order for p in passages] == list(range(len(passages)))
    for p in passages:
        assert 0 <= p.start < p.end <= len(text)
        assert text[p.start:p.end] == p.text
        assert p.text == p.text.strip()
        assert p.document_id == document.id and p.title == document.title
        assert p.id == passage_id(document, p.start, p.end)
        homes = [s for s in sections if s.start <= p.start and p.end <= s.end]
        assert len(homes) == 1, "a passage lies in exactly one section"
        assert p.page == homes[0].page
        # never inside a visible character (combining marks, emoji sequences), unless the
        # section itself begins or ends there
        if text[homes[0].start:p.start].strip():
            assert unicodedata.category(p.text[0])[0] != "M" and p.text[0] != "\u200d"
        if text[p.end:homes[0].end].strip():
            assert unicodedata.category(text[p.end])[0] != "M"
        assert count_words(p.text) <= config.words + max(config.min_words - 1, 0)
    for before, after in pairwise(passages):
        assert before.start < after.start and before.end < after.end
    # coverage: every non-whitespace character of a section is in some passage, and nothing
    # outside the sections is
    covered = bytearray(len(text))
    for p in passages:
        covered[p.start:p.end] = b"\x01" * (p.end - p.start)
    inside = bytearray(len(text))
    for s in sections:
        inside[s.start:s.end] = b"\x01" * (s.end - s.start)
    for i, ch in enumerate(text):
        if inside[i] and not ch.isspace():
            assert covered[i], f"character {i} ({ch!r}) is in no passage"
        if not inside[i]:
            assert not covered[i], f"character {i} outside every section is in a passage"


def words_at(text: str, start: int, end: int) -> set[int]:
    """Start offsets of the whitespace-separated words inside text[start:end]."""
    return {m.start() for m in re.finditer(r"\S+", text) if start <= m.start() and m.end() <= end}


# --------------------------------------------------------------------------------------
# basics


@pytest.mark.parametrize(
    "kwargs", [{"words": 0}, {"overlap": -1}, {"overlap": 200}, {"min_words": 201},
               {"min_words": -1}],
)
def test_config_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ChunkConfig(**kwargs)


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\n", "\u3000\u00a0"])
def test_empty_documents_give_no_passages(text: str) -> None:
    assert chunk_document(make_document(text)) == []


def test_short_document_is_one_trimmed_passage() -> None:
    document = make_document("\n  Hello there, world.  \n\n")
    [p] = chunk_document(document)
    assert (p.text, p.start, p.order, p.page) == ("Hello there, world.", 3, 0, None)
    assert (p.document_id, p.title) == ("doc", "Title of doc")
    assert re.fullmatch(r"[0-9a-f]{16}", p.id)


def test_count_words() -> None:
    assert count_words("a  b\tc\n\nd") == 4
    assert count_words("東京タワー") == 5  # a CJK character is a word
    assert count_words("ab東京。x") == 4  # ab | 東 | 京。 | x
    assert count_words("「東京」。大阪、京都！") == 7  # punctuation stays with its character
    assert count_words("x" * 100) == 13  # a very long run: one word per 8 characters
    assert count_words("café naïve 😀 👩‍👩‍👧 🇫🇷") == 5


@pytest.mark.parametrize(
    "text",
    [
        "Café crème brûlée à la carte. Ærøskøbing is in Denmark. " * 12,
        # combining marks (NFD) must stay with their letters
        unicodedata.normalize("NFD", "Crème brûlée, naïve façade, Đà Nẵng. ") * 15,
        "東京は日本の首都である。大阪は西日本の中心都市だ。" * 20,
        unicodedata.normalize("NFD", "がぎぐげご、ぱぴぷぺぽ。") * 30,
        "Emoji 👩‍👩‍👧 family 🇫🇷 flag 👍🏽 thumbs ❤️ heart. " * 20,
        "  odd\t\tspacing \u00a0 here\u3000and\u2003there.  \n \n  Next   para .  \n\n\n" * 10,
        "ไทยภาษาไทยไม่มีช่องว่างระหว่างคำ" * 20 + " end",
        "see https://example.org/" + "a/very/long/path" * 10 + " now. " + "More words. " * 30,
    ],
)
def test_offsets_exact_on_unicode_text(text: str) -> None:
    config = ChunkConfig(words=12, overlap=3, min_words=3)
    document = make_document(text)
    passages = chunk_document(document, config)
    assert len(passages) > 1
    assert_valid(document, passages, config)


# --------------------------------------------------------------------------------------
# paragraphs


def test_paragraphs_are_packed_greedily_and_whole() -> None:
    sizes = [50, 60, 70, 30, 120, 90]
    parts = [paragraph(n, tag=f"p{k}x") for k, n in enumerate(sizes)]
    text = "\n\n".join(parts)
    document = make_document(text)
    passages = chunk_document(document)
    assert_valid(document, passages, ChunkConfig())
    # 50+60+70 = 180 (+30 > 200), 30+120 = 150 (+90 > 200), 90
    assert [p.text for p in passages] == [
        "\n\n".join(parts[0:3]), "\n\n".join(parts[3:5]), parts[5],
    ]


def test_paragraph_breaks_with_whitespace_and_single_newlines() -> None:
    # "\n \t\n" is a blank line; a single "\n" is not a paragraph break
    parts = [paragraph(150, "a"), paragraph(100, "b") + "\n" + paragraph(40, "c")]
    text = parts[0] + "\n \t\n" + parts[1]
    passages = chunk_document(make_document(text))
    assert [p.text for p in passages] == parts


def test_packed_passages_never_split_a_word() -> None:
    rng = random.Random(3)
    parts = [paragraph(rng.randint(1, 120), tag=f"p{k}q") for k in range(40)]
    text = "\n\n".join(parts)
    passages = chunk_document(make_document(text))
    offsets = [len("\n\n".join(parts[:k])) + (2 if k else 0) for k in range(len(parts))]
    starts = set(offsets)
    ends = {offset + len(part) for offset, part in zip(offsets, parts, strict=True)}
    assert len(passages) > 10
    for p in passages:
        assert p.start in starts and p.end in ends  # whole paragraphs only
        assert count_words(p.text) <= 200 + 19


def test_small_trailing_paragraph_merges_into_previous() -> None:
    parts = [paragraph(198, "a"), paragraph(10, "b")]
    [p] = chunk_document(make_document("\n\n".join(parts)))
    assert count_words(p.text) == 208
    # ...but never across sections
    text, sections = sections_for(parts)
    passages = chunk_document(make_document(text, sections))
    assert [p.text for p in passages] == parts


def test_heading_joins_the_long_paragraph_it_precedes() -> None:
    heading = "Introduction"
    body = sentences_paragraph(60)
    for before in ["", sentences_paragraph(30, seed=3) + "\n\n"]:
        text = before + heading + "\n\n" + body
        document = make_document(text)
        passages = chunk_document(document)
        assert_valid(document, passages, ChunkConfig())
        assert all(p.text != heading for p in passages)
        [first] = [p for p in passages if p.start <= text.index(heading) < p.end]
        assert first.text.startswith(heading + "\n\n" + "Sentence")


# --------------------------------------------------------------------------------------
# long paragraphs


def test_long_paragraph_windows_are_sentence_aligned_with_overlap() -> None:
    text = sentences_paragraph(80, seed=1)  # about 800 words
    document = make_document(text)
    config = ChunkConfig()
    passages = chunk_document(document, config)
    assert_valid(document, passages, config)
    assert len(passages) >= 4
    sentence_starts = {a for a, _ in sentence_spans(text)}
    sentence_ends = {b for _, b in sentence_spans(text)}
    assert len(sentence_starts) == 80
    for p in passages:
        assert p.start in sentence_starts and p.end in sentence_ends
        assert config.min_words <= count_words(p.text) <= config.words
    assert all(count_words(p.text) > config.words // 2 for p in passages[:-1])
    for before, after in pairwise(passages):
        overlap = count_words(text[after.start:before.end])
        assert config.overlap // 2 <= overlap <= 2 * config.overlap
    assert passages[0].start == 0 and passages[-1].end == len(text)


def test_one_long_sentence_is_split_at_words_with_exact_overlap() -> None:
    text = paragraph(450)
    document = make_document(text)
    passages = chunk_document(document)
    assert_valid(document, passages, ChunkConfig())
    word_starts = words_at(text, 0, len(text))
    assert [count_words(p.text) for p in passages] == [200, 200, 110]
    for before, after in pairwise(passages):
        assert count_words(text[after.start:before.end]) == 30
    for p in passages:
        assert p.start in word_starts
        assert p.end == len(text) or text[p.end] == " "


def test_zero_overlap_and_no_tiny_last_window() -> None:
    text = paragraph(205)
    passages = chunk_document(make_document(text), ChunkConfig(overlap=0))
    # [0, 200) and then not a 5-word tail: the last window starts earlier
    assert [count_words(p.text) for p in passages] == [200, 20]
    config = ChunkConfig(words=50, overlap=0, min_words=0)
    passages = chunk_document(make_document(paragraph(120)), config)
    assert [count_words(p.text) for p in passages] == [50, 50, 20]
    assert "".join(p.text + " " for p in passages).strip() == paragraph(120)


def test_sentence_splitter_keeps_abbreviations_and_decimals() -> None:
    sentences = [
        "Mr. Smith met Dr. Jones in St. Louis on Dec. 25 at 3.45 p.m. sharp.",
        "The U.S. Army, e.g. Fort Knox, and J. R. R. Tolkien (i.e. the author) met.",
        "See No. 5 and pp. 12-14 in Fig. 3 of Smith et al. (2019) for details.",
        "He said no.",
        "Then it rained!",
        "Why?",
        "In 1990.",
        '"Quoted."',
        "(Done.)",
        "Pi is 3.14 today...",
        "東京に行った。",
        "大阪にも行った！",
        "Fin.",
    ]
    text = " ".join(sentences[:10]) + " " + "".join(sentences[10:12]) + " " + sentences[12]
    assert [text[a:b] for a, b in sentence_spans(text)] == sentences
    assert sentence_spans("") == [] and sentence_spans("  \n") == []
    # lower-case after a period is not a new sentence
    assert len(sentence_spans("It costs approx. ten dollars. the end")) == 1


def test_windows_never_start_after_an_abbreviation() -> None:
    sentence = "Mr. Smith and Dr. Brown of the U.S. Navy met No. 7 in Washington D.C. today. "
    text = (sentence * 40).strip()
    passages = chunk_document(make_document(text), ChunkConfig(words=50, overlap=10))
    assert len(passages) > 3
    for p in passages:
        assert p.text.startswith("Mr. Smith") and p.text.endswith("today.")


def test_cjk_text_without_spaces_is_split_at_sentence_ends() -> None:
    rng = random.Random(5)
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 500)]
    text = "".join("".join(rng.choices(han, k=rng.randint(15, 40))) + "。" for _ in range(40))
    document = make_document(text)
    config = ChunkConfig()
    passages = chunk_document(document, config)
    assert_valid(document, passages, config)
    assert len(passages) >= 4
    for p in passages:
        assert count_words(p.text) <= config.words
        assert p.start == 0 or text[p.start - 1] == "。"
        assert p.text.endswith("。") or p.end == len(text)


# --------------------------------------------------------------------------------------
# sections


def test_sections_are_never_crossed_and_pages_are_carried() -> None:
    pages = [paragraph(130, "a") + "\n\n" + paragraph(40, "b"), paragraph(30, "c"),
             sentences_paragraph(50, seed=2), "Short last page."]
    text, sections = sections_for(pages, sep="\nRUNNING HEADER\n", pages=True)
    document = make_document(text, sections)
    config = ChunkConfig()
    passages = chunk_document(document, config)
    assert_valid(document, passages, config)
    assert "RUNNING HEADER" not in "".join(p.text for p in passages)
    by_page: dict[int, list[str]] = {}
    for p in passages:
        by_page.setdefault(p.page, []).append(p.text)
    assert by_page[1] == [pages[0]] and by_page[2] == [pages[1]] and by_page[4] == [pages[3]]
    assert len(by_page[3]) > 1


def test_sections_out_of_order_or_out_of_range_are_tolerated() -> None:
    text = "First part here.\n\nSecond part here."
    sections = [Section(18, 10_000, 2), Section(0, 16, 1), Section(5, 5, 3)]
    passages = chunk_document(make_document(text, sections))
    assert [(p.text, p.page, p.order) for p in passages] == [
        ("First part here.", 1, 0), ("Second part here.", 2, 1),
    ]


@pytest.fixture(scope="module")
def squad_articles() -> list[dict]:
    return json.loads(squad_file("dev-v1.1.json").read_text(encoding="utf-8"))["data"]


def test_squad_paragraphs_become_one_passage_each_unless_long(squad_articles: list[dict]) -> None:
    config = ChunkConfig()
    short = long = 0
    for index, article in enumerate(squad_articles):
        contexts = [p["context"] for p in article["paragraphs"]]
        text, sections = sections_for(contexts)
        document = make_document(text, sections, doc_id=f"squad-{index}")
        passages = chunk_document(document, config)
        assert_valid(document, passages, config)
        for section, context in zip(sections, contexts, strict=True):
            inside = [p for p in passages if section.start <= p.start and p.end <= section.end]
            if len(context.split()) <= config.words:
                short += 1
                assert [p.text for p in inside] == [context.strip()]
            else:
                long += 1
                assert len(inside) >= 2
                assert all(count_words(p.text) <= config.words for p in inside)
    assert short > 300 and long > 0


# --------------------------------------------------------------------------------------
# ids


def test_ids_are_stable_and_independent_of_processing_order() -> None:
    documents = [make_document(sentences_paragraph(40, seed=k), doc_id=f"d{k}") for k in range(4)]
    first = {p.id: p for d in documents for p in chunk_document(d)}
    second = {p.id: p for d in reversed(documents) for p in chunk_document(d)}
    assert first == second
    assert len(first) == sum(len(chunk_document(d)) for d in documents)  # no collisions
    # the same text in another document gets other ids
    twin = make_document(documents[0].text, doc_id="twin")
    assert not {p.id for p in chunk_document(twin)} & set(first)


def test_passage_id_depends_on_document_span_and_text() -> None:
    a = make_document("Alpha beta gamma.")
    b = make_document("Alpha beta delta.")
    assert passage_id(a, 0, 5) == passage_id(b, 0, 5)
    assert passage_id(a, 0, 17) != passage_id(b, 0, 17)
    assert passage_id(a, 0, 5) != passage_id(a, 0, 4)
    assert passage_id(a, 0, 5) != passage_id(make_document(a.text, doc_id="other"), 0, 5)
    for start, end in [(5, 5), (-1, 3), (0, 18)]:
        with pytest.raises(ValueError):
            passage_id(a, start, end)


@pytest.mark.parametrize("with_sections", [False, True])
def test_editing_a_paragraph_keeps_the_ids_before_it(with_sections: bool) -> None:
    parts = [sentences_paragraph(n, seed=k) for k, n in enumerate([8, 30, 5, 12, 45, 9, 20])]
    edited = list(parts)
    edited[4] = sentences_paragraph(50, seed=99)

    def build(pieces: list[str]) -> list[Passage]:
        text, sections = sections_for(pieces, pages=True)
        return chunk_document(make_document(text, sections if with_sections else None))

    old, new = build(parts), build(edited)
    assert [p.id for p in old] == [p.id for p in build(parts)]
    change = len("\n\n".join(parts[:4]))
    before = [p for p in old if p.end <= change]
    assert before and new[: len(before)] == before
    assert {p.id for p in new[len(before):]}.isdisjoint(p.id for p in old[len(before):])


# --------------------------------------------------------------------------------------
# property-style: many random texts

_VOCABULARY = [
    "alpha", "Beta", "gamma", "Delta.", "end.", "Why?", "Yes!", "café", "cafe\u0301", "naïve",
    "Ærøskøbing", "Zürich.", "Mr.", "Dr.", "U.S.", "e.g.", "No.", "3.14", "1990.", "(note)",
    '"Quote."', "東京", "タワー", "日本語の文章。", "「引用」。", "😀", "👩‍👩‍👧", "🇫🇷", "👍🏽",
    "한국어", "ไทยภาษา", "x" * 70, "\u200b", "—",
]
_SEPARATORS = [" "] * 12 + ["  ", "\t", "\u00a0", "\u3000", "\n", "\n\n", "\n \n", "\n\n\n",
                            " \n\t\n "]


def random_document(rng: random.Random, index: int) -> Document:
    n = rng.choice([0, 1, 5, 30, 120, 400])
    pieces = [rng.choice(["", " ", "\n\n"])]
    for _ in range(n):
        pieces += [rng.choice(_VOCABULARY), rng.choice(_SEPARATORS)]
    text = "".join(pieces)
    sections: list[Section] = []
    if text and rng.random() < 0.5:
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, 2 * rng.randint(1, 5))))
        sections = [Section(a, b, page) for page, (a, b) in
                    enumerate(zip(cuts[::2], cuts[1::2], strict=False), start=1) if a < b]
    return make_document(text, sections, doc_id=f"random-{index}")


def test_random_documents_satisfy_all_invariants() -> None:
    rng = random.Random(20240601)
    for index in range(250):
        words = rng.randint(3, 60)
        config = ChunkConfig(words=words, overlap=rng.randint(0, words // 2),
                             min_words=rng.randint(0, words // 2))
        document = random_document(rng, index)
        passages = chunk_document(document, config)
        assert_valid(document, passages, config)
        assert chunk_document(document, config) == passages  # deterministic
        if any(len(run) > 64 for run in document.text.split()):
            continue  # a passage cut inside a long run counts it differently on its own
        sections = document.sections or [Section(0, len(document.text))]
        for section in sections:
            inside = [p for p in passages if section.start <= p.start and p.end <= section.end]
            for k, p in enumerate(inside):
                if count_words(p.text) < config.min_words and len(inside) > 1:
                    # only a last passage whose predecessor is already full stays small
                    assert k == len(inside) - 1
                    assert count_words(inside[k - 1].text) > config.words
