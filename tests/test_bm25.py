"""Tests for retriever.text and retriever.bm25.

BM25Index must give rank-bm25's ``BM25Okapi`` scores and rankings exactly (checked on the real
SQuAD paragraphs and on small corpora built to hit every corner of its formula: the epsilon
floor, repeated and unknown query terms, empty queries and documents), filter with masks,
and round-trip through files without pickle. (How much faster than rank-bm25 it is
measures the machine as much as the code: bench/retrieval.py reports both latencies.)
"""

from __future__ import annotations

import json
import random
import shutil
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import squad_file
from rank_bm25 import BM25Okapi

from spanqa.index.bm25 import BM25Index
from spanqa.index.text import ENGLISH_STOP_WORDS, tokenize

# --------------------------------------------------------------------------- helpers


def reference_ranking(scores: np.ndarray, k: int | None = None) -> list[int]:
    """rank-bm25's order with ties broken by lower index: a stable sort of -scores."""
    return np.argsort(-scores, kind="stable")[:k].tolist()


def assert_matches_rank_bm25(
    corpus: list[list[str]], queries: list[list[str]], **params: float
) -> BM25Index:
    """Scores equal BM25Okapi's to 1e-9 and the full ranking is identical, for every query."""
    reference = BM25Okapi(corpus, **params)
    index = BM25Index.build(corpus, **params)
    assert len(index) == len(corpus)
    assert index.average_idf == pytest.approx(reference.average_idf, abs=1e-12)
    for term, idf in reference.idf.items():
        assert index.idf[index.vocabulary.index(term)] == pytest.approx(idf, abs=1e-12)
    for query in queries:
        expected = reference.get_scores(query)
        got = index.scores(query)
        assert got.dtype == np.float64
        assert got.shape == (len(corpus),)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9, err_msg=str(query))
        ranked = index.top_k(query, len(corpus))
        assert [doc for doc, _ in ranked] == reference_ranking(expected), query
        assert [score for _, score in ranked] == pytest.approx(
            sorted(expected.tolist(), reverse=True), abs=1e-9
        )
    return index


def random_corpus(seed: int, n_docs: int, vocab_size: int, max_len: int) -> list[list[str]]:
    """A corpus over a small vocabulary, so many terms are in most documents (negative idf)."""
    rng = random.Random(seed)
    vocab = [f"t{i}" for i in range(vocab_size)]
    weights = [1.0 / (i + 1) for i in range(vocab_size)]  # Zipf-like: a few very common terms
    return [rng.choices(vocab, weights, k=rng.randint(0, max_len)) for _ in range(n_docs)]


# --------------------------------------------------------------------------- tokenize


def test_tokenize_lowercases_and_strips_accents():
    assert tokenize("Café") == ["cafe"]
    assert tokenize("Naïve RÉSUMÉ Ångström façade") == ["naive", "resume", "angstrom", "facade"]
    # Letters without a decomposition stay as they are, lower-cased.
    assert tokenize("Straße Ørsted") == ["straße", "ørsted"]


def test_tokenize_folds_compatibility_forms():
    assert tokenize("ＦＵＬＬ１２３ ﬁnal ℌilbert") == ["full123", "final", "hilbert"]


def test_tokenize_splits_on_punctuation_symbols_and_underscores():
    assert tokenize("Hello, world! (x-ray) snake_case e-mail: a/b+c=d") == [
        "hello", "world", "x", "ray", "snake", "case", "e", "mail", "b", "c",
    ]
    assert tokenize("Beyoncé’s 'Dangerously in Love'") == ["beyonce", "dangerously", "love"]


def test_tokenize_drops_stop_words():
    assert tokenize("What is the capital of France?") == ["capital", "france"]
    assert tokenize("Which team won Super Bowl 50?") == ["team", "won", "super", "bowl", "50"]
    assert tokenize(" ".join(sorted(ENGLISH_STOP_WORDS)).upper()) == []


def test_stop_words_are_normalised_tokens():
    assert 140 <= len(ENGLISH_STOP_WORDS) <= 180
    for word in ENGLISH_STOP_WORDS:
        assert word == word.lower() and word.isascii() and word.isalnum(), word
    assert {"the", "a", "of", "and", "what", "which", "s", "t"} <= ENGLISH_STOP_WORDS
    assert "won" not in ENGLISH_STOP_WORDS


def test_tokenize_keeps_digits():
    assert tokenize("Super Bowl 50 in 2016, pi is 3.14") == [
        "super", "bowl", "50", "2016", "pi", "3", "14",
    ]
    assert tokenize("COVID-19 1990s") == ["covid", "19", "1990s"]


def test_tokenize_cjk_characters_are_single_tokens():
    assert tokenize("北京大学") == ["北", "京", "大", "学"]
    assert tokenize("東京タワーは高い") == ["東", "京", "タ", "ワ", "ー", "は", "高", "い"]
    assert tokenize("Tokyo東京2020年") == ["tokyo", "東", "京", "2020", "年"]
    # Hangul separates words with spaces: words stay whole (and recomposed after NFKD).
    assert tokenize("한국어 단어") == ["한국어", "단어"]


def test_tokenize_edge_cases_and_determinism():
    assert tokenize("") == []
    assert tokenize("  \n\t ... !!! ___ ") == []
    text = "Frédéric Chopin (1810–1849) was a Polish composer — 北京!"
    first = tokenize(text)
    assert first == ["frederic", "chopin", "1810", "1849", "polish", "composer", "北", "京"]
    assert tokenize(text) == first and tokenize(text) is not first


# --------------------------------------------------------------------------- BM25 vs rank-bm25


def test_term_in_most_documents_gets_epsilon_floor():
    corpus = [["the", "cat", "sat"], ["the", "dog"], ["the", "bird", "sang"], ["fish"]]
    index = assert_matches_rank_bm25(
        corpus, [["the"], ["the", "cat"], ["fish", "the", "dog"], ["sang"]]
    )
    the = index.vocabulary.index("the")  # in 3 of 4 documents: log(1.5) - log(3.5) < 0
    assert index.idf[the] == 0.25 * index.average_idf > 0
    assert index.scores(["the"])[3] == 0.0


def test_term_in_every_document():
    corpus = [["a", "x"], ["a", "y", "y"], ["a", "z"], ["a"]]
    assert_matches_rank_bm25(corpus, [["a"], ["a", "y"], ["z", "a", "a"]])


def test_negative_average_idf_gives_negative_floor():
    # Every term is in more than half of the documents: the average idf is negative, so the
    # "floor" is negative too, and rank-bm25 scores below zero; we must do the same.
    corpus = [["a", "b"], ["a", "b"], ["a"]]
    index = assert_matches_rank_bm25(corpus, [["a"], ["b"], ["a", "b"], ["b", "a", "a"]])
    assert index.average_idf < 0
    assert (index.scores(["a"]) < 0).all()
    # Negative scores rank below documents that do not match at all.
    corpus = [["a", "b"], ["a", "b"], ["a", "b"], ["c"]]
    index = assert_matches_rank_bm25(corpus, [["a"], ["b"], ["a", "c"]])
    assert index.average_idf < 0
    assert [doc for doc, _ in index.top_k(["a"], 4)] == [3, 0, 1, 2]


def test_zero_idf_term():
    corpus = [["x", "y"], ["y", "z"]]  # "x" in 1 of 2 documents: log(1.5) - log(1.5) == 0
    index = assert_matches_rank_bm25(corpus, [["x"], ["x", "z"], ["y"]])
    assert index.idf[index.vocabulary.index("x")] == 0.0


def test_repeated_query_terms_count_each_time():
    corpus = [["cat", "sat", "mat"], ["dog", "sat"], ["cat", "cat", "hat"], ["bird"]]
    index = assert_matches_rank_bm25(corpus, [["cat", "cat"], ["cat", "cat", "cat", "dog"]])
    np.testing.assert_array_equal(index.scores(["cat", "cat"]), 2 * index.scores(["cat"]))


def test_unknown_and_empty_queries():
    corpus = [["cat", "sat"], ["dog"], ["cat", "hat"]]
    index = assert_matches_rank_bm25(corpus, [["unknown"], ["cat", "unknown"], []])
    np.testing.assert_array_equal(index.scores(["cat", "nope"]), index.scores(["cat"]))
    for query in ([], ["nope"], ["nope", "never"]):
        scores = index.scores(query)
        assert scores.dtype == np.float64 and scores.shape == (3,)
        assert not scores.any()
    # Nothing matches: every document scores 0 and ties go to the lower index.
    assert index.top_k([], 2) == [(0, 0.0), (1, 0.0)]


def test_empty_documents():
    corpus = [[], ["cat", "sat"], [], ["dog", "cat"], ["hat"], []]
    index = assert_matches_rank_bm25(corpus, [["cat"], ["dog", "hat"], ["sat", "cat", "cat"]])
    assert len(index) == 6
    assert index.doc_len.tolist() == [0, 2, 0, 2, 1, 0]
    assert index.scores(["cat"])[[0, 2, 5]].tolist() == [0.0, 0.0, 0.0]


def test_corpus_of_empty_documents_scores_zero():
    index = BM25Index.build([[], []])  # rank-bm25 divides by zero here
    assert len(index) == 2 and index.vocabulary == []
    assert index.scores(["a"]).tolist() == [0.0, 0.0]
    assert index.top_k(["a"], 5) == [(0, 0.0), (1, 0.0)]


@pytest.mark.parametrize(
    "params",
    [{"k1": 1.2, "b": 0.5, "epsilon": 0.1}, {"k1": 2.0, "b": 1.0, "epsilon": 0.5},
     {"k1": 0.9, "b": 0.0, "epsilon": 0.0}],
)
def test_other_parameters(params):
    corpus = random_corpus(seed=7, n_docs=40, vocab_size=25, max_len=12)
    corpus = [doc or ["t0"] for doc in corpus]  # b=1 with an empty document: nan in rank-bm25
    queries = [["t0"], ["t1", "t2", "t1"], ["t24", "t3", "zzz"]]
    index = assert_matches_rank_bm25(corpus, queries, **params)
    assert (index.k1, index.b, index.epsilon) == (params["k1"], params["b"], params["epsilon"])


@pytest.mark.parametrize("seed", range(6))
def test_random_corpora_match_rank_bm25(seed):
    rng = random.Random(100 + seed)
    corpus = random_corpus(seed, n_docs=rng.randint(1, 60), vocab_size=30, max_len=15)
    vocab = [f"t{i}" for i in range(32)]  # t30 and t31 are never indexed
    queries = [rng.choices(vocab, k=rng.randint(0, 8)) for _ in range(25)]
    assert_matches_rank_bm25(corpus, queries)


def test_build_rejects_bad_input():
    with pytest.raises(ValueError, match="empty corpus"):
        BM25Index.build([])
    with pytest.raises(TypeError, match="document 1"):
        BM25Index.build([["a"], "not tokens"])
    for params in ({"k1": -1.0}, {"b": 1.5}, {"b": -0.1}, {"epsilon": float("nan")}):
        with pytest.raises(ValueError):
            BM25Index.build([["a"]], **params)
    index = BM25Index.build([["a"]])
    with pytest.raises(TypeError, match="not a string"):
        index.scores("a question")


# --------------------------------------------------------------------------- top_k


def test_top_k_breaks_ties_by_lower_index():
    corpus = [["c"], ["a", "b"], ["c"], ["a", "b"], ["a", "b"], ["a", "b", "a", "b", "x"]]
    index = BM25Index.build(corpus)
    scores = index.scores(["a", "b"])
    assert scores[1] == scores[3] == scores[4]
    assert [doc for doc, _ in index.top_k(["a", "b"], 2)] == [1, 3]
    assert [doc for doc, _ in index.top_k(["a", "b"], 4)] == [1, 3, 4, 5]
    # Ties at the k-th place are filled by index, whichever argpartition picks.
    corpus = [["same"] for _ in range(50)] + [["same", "best"]]
    index = BM25Index.build(corpus)
    assert [doc for doc, _ in index.top_k(["same", "best"], 4)] == [50, 0, 1, 2]


def test_top_k_sizes_and_scores():
    corpus = [["cat", "sat"], ["dog"], ["cat", "hat", "cat"], ["bird"], ["fish"]]
    index = BM25Index.build(corpus)
    scores = index.scores(["cat"])
    assert index.top_k(["cat"], 0) == []
    best = index.top_k(["cat"], 10)  # k > number of documents: all of them
    assert [doc for doc, _ in best] == [2, 0, 1, 3, 4]
    assert [score for _, score in best] == [scores[2], scores[0], 0.0, 0.0, 0.0]
    assert scores[2] > scores[0] > 0
    assert all(isinstance(doc, int) and isinstance(s, float) for doc, s in best)
    with pytest.raises(ValueError, match="k must be"):
        index.top_k(["cat"], -1)


@pytest.mark.parametrize("seed", range(4))
def test_top_k_equals_stable_sort_for_every_k_and_mask(seed):
    rng = random.Random(seed)
    corpus = random_corpus(seed, n_docs=45, vocab_size=20, max_len=6)
    corpus += corpus[:10]  # duplicates: exact ties
    index = BM25Index.build(corpus)
    n = len(corpus)
    masks = [None, np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]
    masks += [np.array([rng.random() < p for _ in range(n)]) for p in (0.1, 0.5, 0.9)]
    for query in (["t0"], ["t5", "t1"], ["t19", "t19", "t3"], ["nope"], []):
        scores = index.scores(query)
        for allowed in masks:
            order = [i for i in reference_ranking(scores) if allowed is None or allowed[i]]
            for k in range(n + 2):
                got = index.top_k(query, k, allowed=allowed)
                assert [doc for doc, _ in got] == order[:k], (query, k)
                assert [s for _, s in got] == scores[order[:k]].tolist()


def test_allowed_mask_is_validated():
    index = BM25Index.build([["a"], ["b"], ["a", "b"], ["c"], ["d"]])
    assert index.top_k(["a"], 3, allowed=np.array([False, True, True, False, True])) == [
        (2, index.scores(["a"])[2]), (1, 0.0), (4, 0.0),
    ]
    assert index.top_k(["a"], 3, allowed=np.zeros(5, dtype=bool)) == []
    with pytest.raises(ValueError, match="boolean mask"):
        index.top_k(["a"], 1, allowed=np.ones(2, dtype=bool))
    with pytest.raises(ValueError, match="boolean mask"):
        index.top_k(["a"], 1, allowed=np.array([1, 0, 1, 0, 1]))


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip_without_pickle(tmp_path):
    corpus = [*random_corpus(3, n_docs=80, vocab_size=60, max_len=20), ["café", "東"], []]
    index = BM25Index.build(corpus, k1=1.3, b=0.7, epsilon=0.2)
    index.save(tmp_path / "bm25")
    assert sorted(p.name for p in (tmp_path / "bm25").iterdir()) == ["bm25.npz", "vocab.json"]

    # Readable with pickle disabled, and nothing in it is an object array.
    with np.load(tmp_path / "bm25" / "bm25.npz", allow_pickle=False) as npz:
        assert npz.files
        for name in npz.files:
            assert npz[name].dtype != object, name
    with zipfile.ZipFile(tmp_path / "bm25" / "bm25.npz") as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())
    meta = json.loads((tmp_path / "bm25" / "vocab.json").read_text(encoding="ascii"))
    assert meta["vocabulary"] == index.vocabulary

    loaded = BM25Index.load(tmp_path / "bm25")
    assert len(loaded) == len(index)
    assert (loaded.k1, loaded.b, loaded.epsilon) == (1.3, 0.7, 0.2)
    assert (loaded.avgdl, loaded.average_idf) == (index.avgdl, index.average_idf)
    assert loaded.vocabulary == index.vocabulary
    np.testing.assert_array_equal(loaded.idf, index.idf)
    np.testing.assert_array_equal(loaded.doc_len, index.doc_len)
    rng = random.Random(0)
    vocab = [*index.vocabulary, "unknown"]
    for query in [[], ["café", "東"], *(rng.choices(vocab, k=5) for _ in range(30))]:
        np.testing.assert_array_equal(loaded.scores(query), index.scores(query))
        assert loaded.top_k(query, 7) == index.top_k(query, 7)


def test_save_overwrites_and_load_refuses_mixed_or_foreign_files(tmp_path):
    first = BM25Index.build([["a", "b"], ["c"]])
    second = BM25Index.build([["x"], ["y"], ["z"]])
    first.save(tmp_path / "one")
    second.save(tmp_path / "two")
    second.save(tmp_path / "one")  # overwrite in place, no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["bm25.npz", "vocab.json"]
    assert len(BM25Index.load(tmp_path / "one")) == 3

    first.save(tmp_path / "mixed")
    shutil.copy(tmp_path / "two" / "vocab.json", tmp_path / "mixed" / "vocab.json")
    with pytest.raises(ValueError, match="different saves"):
        BM25Index.load(tmp_path / "mixed")

    meta_path = tmp_path / "two" / "vocab.json"
    meta = json.loads(meta_path.read_text(encoding="ascii"))
    meta["version"] = 99
    meta_path.write_text(json.dumps(meta), encoding="ascii")
    with pytest.raises(ValueError, match="version"):
        BM25Index.load(tmp_path / "two")
    with pytest.raises(FileNotFoundError):
        BM25Index.load(tmp_path / "missing")


# --------------------------------------------------------------------------- real SQuAD


@pytest.fixture(scope="module")
def squad() -> SimpleNamespace:
    """Every paragraph of the dev and train files is a document; 300 dev questions."""
    docs: list[str] = []
    questions: list[tuple[str, int]] = []
    n_dev_docs = 0
    for name in ("dev-v1.1.json", "train-v1.1.json"):
        path = squad_file(name)
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                docs.append(paragraph["context"])
                if name.startswith("dev"):
                    questions += [(qa["question"], len(docs) - 1) for qa in paragraph["qas"]]
        if name.startswith("dev"):
            n_dev_docs = len(docs)
    corpus = [tokenize(doc) for doc in docs]
    sample = random.Random(20240611).sample(questions, 300)
    reference = BM25Okapi(corpus)
    queries = [tokenize(question) for question, _ in sample]
    return SimpleNamespace(
        corpus=corpus,
        queries=queries,
        gold=[gold for _, gold in sample],
        n_dev_docs=n_dev_docs,
        expected=[reference.get_scores(query) for query in queries],
        index=BM25Index.build(corpus),
    )


def test_squad_scores_and_rankings_equal_rank_bm25(squad):
    assert 1700 <= len(squad.index) == len(squad.corpus) <= 1750
    for query, expected in zip(squad.queries, squad.expected, strict=True):
        got = squad.index.scores(query)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9, err_msg=str(query))
        assert [doc for doc, _ in squad.index.top_k(query, 20)] == reference_ranking(
            expected, 20
        ), query


def test_squad_scores_are_bitwise_equal(squad):
    # Not just close: the same float64 operations in the same order as rank-bm25.
    same = sum(
        np.array_equal(squad.index.scores(q), e)
        for q, e in zip(squad.queries, squad.expected, strict=True)
    )
    assert same == len(squad.queries)


def test_squad_retrieval_finds_the_gold_paragraph(squad):
    # A sanity check of tokenizer + BM25 together (measured: 0.96 at 20, ~0.8 at 1).
    ranked = [[doc for doc, _ in squad.index.top_k(q, 20)] for q in squad.queries]
    at_1 = np.mean([r[0] == gold for r, gold in zip(ranked, squad.gold, strict=True)])
    at_20 = np.mean([gold in r for r, gold in zip(ranked, squad.gold, strict=True)])
    assert at_1 >= 0.6 and at_20 >= 0.85, (at_1, at_20)


def test_squad_allowed_mask_filters_rankings(squad):
    allowed = np.zeros(len(squad.index), dtype=bool)
    allowed[: squad.n_dev_docs] = True  # the dev articles only
    for query, expected in zip(squad.queries[:50], squad.expected[:50], strict=True):
        order = [i for i in reference_ranking(expected) if allowed[i]][:10]
        got = squad.index.top_k(query, 10, allowed=allowed)
        assert [doc for doc, _ in got] == order
        assert all(doc < squad.n_dev_docs for doc, _ in got)


def test_squad_save_load_round_trip(squad, tmp_path):
    squad.index.save(tmp_path / "squad-bm25")
    loaded = BM25Index.load(tmp_path / "squad-bm25")
    for query, expected in zip(squad.queries[:50], squad.expected[:50], strict=True):
        np.testing.assert_array_equal(loaded.scores(query), squad.index.scores(query))
        np.testing.assert_allclose(loaded.scores(query), expected, rtol=0, atol=1e-9)
