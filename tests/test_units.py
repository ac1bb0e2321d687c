"""Sentence units: a long passage is also embedded sentence group by sentence group and
scores its best unit; stored in passage order, kept across updates, checked by verify."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from spanqa.index.files import UNITS
from spanqa.index.layout import IndexDir
from spanqa.index.units import best_per_passage
from spanqa.index.verify import verify_index
from spanqa.indexer.build import IndexConfig, update_index
from spanqa.indexer.chunking import count_words
from spanqa.indexer.unit_split import sentence_groups
from spanqa.retriever.search import Filters, Retriever
from spanqa.runtime.embedder import Embedder

LONG = ("The lighthouse on the northern cape was built in 1871 by a local engineer. "
        "Its lamp burned whale oil until the keepers switched to kerosene. "
        "Ships rounding the cape in winter relied on it during the long storms. "
        "A small museum beside it now shows the original lens and logbooks. "
        "Visitors can climb its one hundred and twelve steps in the summer months.")
DOCS = {
    "cape.txt": LONG,
    "orchard.txt": "Apple trees in the valley flower in April. " * 2
                   + "The cider press runs from September to November, after the harvest.",
    "short.txt": "Oslo is the capital of Norway.",
    "apricot.txt": "Apricots need a warm spring. Late frost kills the blossom in a night. "
                   "Growers light small fires between the rows to keep the air moving. "
                   "The fruit is picked by hand in July and sold within days.",
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("minilm")


def write(root: Path, docs: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_sentence_groups_cut_at_sentences_within_the_word_limit():
    groups = sentence_groups(LONG, 25)
    assert len(groups) > 1
    assert groups[0][0] == 0 and groups[-1][1] == len(LONG)
    for (a, b), (c, _) in itertools.pairwise(groups):
        assert LONG[b - 1] == "." and LONG[a].isupper() and b <= c
    assert all(count_words(LONG[a:b]) <= 25 for a, b in groups)
    assert sentence_groups(LONG, 1)  # sentences longer than the limit stand alone
    assert sentence_groups("Oslo is the capital of Norway.", 25) == []
    assert sentence_groups(LONG, 0) == []


def test_a_passage_scores_its_best_sentence_group(tmp_path, embedder):
    docs = write(tmp_path / "docs", DOCS)
    index = tmp_path / "idx"
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False,
                 config=IndexConfig(sentence_words=25))
    retriever = Retriever(index, embedder=embedder)
    owners = retriever.owners
    assert len(owners) > retriever.passages == 4 and np.all(np.diff(owners) >= 0)
    assert verify_index(index) == []
    question = "When did the keepers stop burning whale oil?"
    query = retriever.embed_questions([question])[0]
    rows = np.arange(retriever.passages)
    best = retriever.dense_scores(rows, query)
    for row in rows:
        units = np.asarray(retriever.vectors)[owners == row] @ query
        assert best[row] == pytest.approx(units.max(), abs=1e-6)
    whole = np.asarray(retriever.vectors)[retriever.bounds[rows]] @ query  # first unit: whole
    assert best.max() > whole.max()  # the sentence matches better than the paragraph
    hits = retriever.search(question, 4, mode="dense")
    assert len({h.passage_id for h in hits}) == 4 and hits[0].title == "cape"
    assert hits[0].score == pytest.approx(best.max(), abs=1e-5)
    only = retriever.search(question, 4, mode="dense", filters=Filters(path_prefix=str(docs)))
    assert [(h.passage_id, round(h.score, 5)) for h in only] == [
        (h.passage_id, round(h.score, 5)) for h in hits]


def test_updates_keep_each_passages_units_and_old_indexes_still_load(tmp_path, embedder):
    docs = write(tmp_path / "docs", DOCS)
    index = tmp_path / "idx"
    config = IndexConfig(sentence_words=25)
    update_index(index, add=[docs], rebuild=True, embedder=embedder, progress=False,
                 config=config)
    before = Retriever(index, embedder=embedder)
    cape = [r["row"] for r in before.db.query(
        "select p.row from passages p join documents d on d.id = p.document_id "
        "where d.title = 'cape'")]
    cape_units = np.asarray(before.vectors)[np.isin(before.owners, cape)].copy()
    before_rows = cape
    # Change the orchard, drop the apricots (stored before the cape): the cape's units
    # travel to its new rows.
    (docs / "orchard.txt").write_text("Pears ripen in the valley in late August.")
    (docs / "apricot.txt").unlink()
    update_index(index, add=[docs / "orchard.txt"], remove=[str(docs / "apricot.txt")],
                 embedder=embedder, progress=False)
    assert verify_index(index) == []
    after = Retriever(index, embedder=embedder)
    assert after.passages == 3
    cape = [r["row"] for r in after.db.query(
        "select p.row from passages p join documents d on d.id = p.document_id "
        "where d.title = 'cape'")]
    assert np.array_equal(np.asarray(after.vectors)[np.isin(after.owners, cape)], cape_units)
    assert before_rows != cape  # it did move
    hits = after.search("When did the keepers stop burning whale oil?", 1, mode="dense")
    assert hits[0].title == "cape"
    with pytest.raises(ValueError, match="rebuild"):
        update_index(index, add=[docs], config=IndexConfig(sentence_words=50),
                     embedder=embedder, progress=False)

    # An index from before sentence units: one vector per passage, no units.npy.
    old = tmp_path / "old"
    update_index(old, add=[docs], rebuild=True, embedder=embedder, progress=False,
                 config=IndexConfig(sentence_words=0))
    generation = IndexDir(old).current()
    (generation / UNITS).unlink()
    manifest = json.loads((generation / "manifest.json").read_text())
    del manifest["config"]["sentence_words"]
    (generation / "manifest.json").write_text(json.dumps(manifest))
    assert verify_index(old) == []
    hits = Retriever(old, embedder=embedder).search("lighthouse lamp", 2, mode="dense")
    assert hits[0].title == "cape"


def test_verify_reports_vectors_that_map_to_no_passage(tmp_path, embedder):
    docs = write(tmp_path / "docs", DOCS)
    update_index(tmp_path / "idx", add=[docs], rebuild=True, embedder=embedder,
                 progress=False, config=IndexConfig(sentence_words=25))
    generation = IndexDir(tmp_path / "idx").current()
    owners = np.load(generation / UNITS)
    np.save(generation / UNITS, owners[::-1].copy())
    assert any("in order" in p for p in verify_index(tmp_path / "idx"))
    np.save(generation / UNITS, np.zeros_like(owners))
    assert any("have no vector" in p for p in verify_index(tmp_path / "idx"))


def test_best_per_passage_leaves_unscored_passages_at_minus_infinity():
    best = best_per_passage(np.array([0.2, 0.5, 0.1]), np.array([0, 0, 2]), 3)
    assert best[0] == pytest.approx(0.5) and best[1] == -np.inf and best[2] == pytest.approx(0.1)
