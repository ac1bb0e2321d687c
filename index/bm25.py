"""Okapi BM25 with rank-bm25's exact scores, served from a precomputed sparse matrix.

rank-bm25's ``BM25Okapi.get_scores`` walks every document in Python for every query term,
which takes tens of milliseconds per query over a few thousand passages and seconds over
hundreds of thousands. Its per-(term, document) contribution depends only on the term and the
document, though, so :class:`BM25Index` computes all of them once, at build time, into a CSR
matrix with one row per term; a query is then the sum of a few sparse rows.

The arithmetic replicates rank-bm25 (``BM25Okapi``, k1=1.5, b=0.75, epsilon=0.25) operation
by operation, so scores are not merely close but bit-for-bit equal in practice:

- ``idf(t) = log(N - n(t) + 0.5) - log(n(t) + 0.5)`` computed with :func:`math.log`, as
  rank-bm25 does; a term in more than half of the documents has a negative idf, which is
  replaced by ``epsilon * average_idf``, the average over the *whole* vocabulary taken
  before the replacement, summed in first-occurrence order as rank-bm25's dict does;
- ``weight(t, d) = idf(t) * (tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)))``;
- a query adds the weights of its tokens in query order (np.bincount over the tokens' rows),
  so a repeated token counts as many times as it occurs and a token not in the vocabulary
  adds nothing.

One deliberate difference: a document without the term contributes exactly 0, where
rank-bm25 would compute ``0 / 0 = nan`` in the degenerate settings ``k1 == 0`` or
``b == 1`` with an empty document.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import sparse

from ..core.atomic import atomic_file

__all__ = ["BM25Index"]

_FORMAT = "spanqa.bm25"
_VERSION = 1
_ARRAYS_FILE = "bm25.npz"
_VOCAB_FILE = "vocab.json"


class BM25Index:
    """An immutable BM25 index over tokenized documents, addressed by document position.

    Build it with :meth:`build` (or :meth:`load` a saved one); documents are numbered by their
    position in the corpus given to :meth:`build`. Queries are read-only, so one index can
    serve many threads.
    """

    k1: float
    b: float
    epsilon: float
    avgdl: float
    """Average document length in tokens, as rank-bm25's ``avgdl``."""
    average_idf: float
    """Mean idf over the vocabulary before the epsilon floor (rank-bm25's ``average_idf``)."""
    vocabulary: list[str]
    """Terms in order of first occurrence in the corpus; a term's row in :attr:`weights`."""
    idf: np.ndarray
    """float64 idf per term (after the epsilon floor), aligned with :attr:`vocabulary`."""
    doc_len: np.ndarray
    """int64 length in tokens of each document."""
    weights: sparse.csr_array
    """float64 (terms x documents) BM25 contribution of each term to each document."""

    def __init__(
        self,
        *,
        vocabulary: list[str],
        idf: np.ndarray,
        doc_len: np.ndarray,
        weights: sparse.csr_array,
        k1: float,
        b: float,
        epsilon: float,
        avgdl: float,
        average_idf: float,
    ) -> None:
        """Assemble an index from its parts; use :meth:`build` or :meth:`load` instead."""
        n_terms, n_docs = weights.shape
        if len(vocabulary) != n_terms or idf.shape != (n_terms,) or doc_len.shape != (n_docs,):
            raise ValueError(
                f"inconsistent BM25 index: {len(vocabulary)} terms, idf {idf.shape}, "
                f"weights {weights.shape}, doc_len {doc_len.shape}"
            )
        self.k1 = float(k1)
        self.b = float(b)
        self.epsilon = float(epsilon)
        self.avgdl = float(avgdl)
        self.average_idf = float(average_idf)
        self.vocabulary = vocabulary
        self.idf = idf
        self.doc_len = doc_len
        self.weights = weights
        self._term_ids = {term: i for i, term in enumerate(vocabulary)}
        if len(self._term_ids) != n_terms:
            raise ValueError("inconsistent BM25 index: the vocabulary has duplicate terms")
        # Row slices of the CSR matrix are read directly: scipy's row indexing costs more
        # than the arithmetic for a query of a few terms.
        self._indptr = weights.indptr
        self._indices = weights.indices
        self._data = weights.data

    # ------------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        corpus_tokens: Sequence[Sequence[str]],
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
    ) -> BM25Index:
        """Index ``corpus_tokens`` (one token list per document) with rank-bm25's parameters.

        Raises ``ValueError`` for an empty corpus (rank-bm25 divides by zero there) or
        parameters outside BM25's range, and ``TypeError`` when a document is a plain string
        (which would otherwise be indexed character by character).
        """
        if not (math.isfinite(k1) and k1 >= 0):
            raise ValueError(f"k1 must be a finite number >= 0, got {k1!r}")
        if not (0.0 <= b <= 1.0):
            raise ValueError(f"b must be in [0, 1], got {b!r}")
        if not math.isfinite(epsilon):
            raise ValueError(f"epsilon must be finite, got {epsilon!r}")

        # Term ids in order of first occurrence: the order of rank-bm25's `nd` dict, which
        # fixes the order in which it sums idfs for the epsilon floor.
        vocab: dict[str, int] = {}
        setdefault = vocab.setdefault
        flat: list[int] = []
        lengths: list[int] = []
        for position, doc in enumerate(corpus_tokens):
            if isinstance(doc, str | bytes):
                raise TypeError(
                    f"document {position} is a {type(doc).__name__}, not a sequence of tokens"
                )
            before = len(flat)
            flat.extend([setdefault(token, len(vocab)) for token in doc])
            lengths.append(len(flat) - before)
        n_docs = len(lengths)
        if n_docs == 0:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        n_terms = len(vocab)
        vocabulary = list(vocab)

        doc_len = np.asarray(lengths, dtype=np.int64)
        term_of_token = np.asarray(flat, dtype=np.int64)
        doc_of_token = np.repeat(np.arange(n_docs, dtype=np.int64), doc_len)
        # One key per (term, document) pair; sorted unique keys are already in CSR order
        # (by term, then by document) and their counts are the term frequencies.
        keys, tf = np.unique(term_of_token * n_docs + doc_of_token, return_counts=True)
        rows = keys // n_docs
        cols = keys % n_docs
        del term_of_token, doc_of_token, keys, flat

        # rank-bm25: avgdl = num_doc / corpus_size (a correctly rounded true division).
        avgdl = int(doc_len.sum()) / n_docs
        doc_freq = np.bincount(rows, minlength=n_terms)
        idf, average_idf = _okapi_idf(doc_freq, n_docs, epsilon)

        # Same operations in the same order as rank-bm25's get_scores, element by element.
        tf_f = tf.astype(np.float64)
        dl = doc_len[cols]
        data = idf[rows] * (tf_f * (k1 + 1) / (tf_f + k1 * (1 - b + b * dl / avgdl)))
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(doc_freq, out=indptr[1:])
        index_dtype = np.int32 if max(n_docs, data.size) < 2**31 else np.int64
        weights = sparse.csr_array(
            (data, cols.astype(index_dtype), indptr.astype(index_dtype)),
            shape=(n_terms, n_docs),
        )
        return cls(
            vocabulary=vocabulary, idf=idf, doc_len=doc_len, weights=weights,
            k1=k1, b=b, epsilon=epsilon, avgdl=avgdl, average_idf=average_idf,
        )

    # ------------------------------------------------------------------------ querying

    def __len__(self) -> int:
        """Number of documents."""
        return self.weights.shape[1]

    def __repr__(self) -> str:
        return (
            f"BM25Index({len(self)} documents, {len(self.vocabulary)} terms, "
            f"k1={self.k1}, b={self.b}, epsilon={self.epsilon})"
        )

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for the query: float64, equal to rank-bm25's.

        Each occurrence of a token adds its row once (a repeated token counts twice, as in
        rank-bm25's loop over the query); unknown tokens add nothing; an empty query gives
        all zeros.
        """
        if isinstance(query_tokens, str | bytes):
            raise TypeError("query_tokens must be a sequence of tokens, not a string")
        indptr, term_ids = self._indptr, self._term_ids
        rows = []
        for token in query_tokens:
            term = term_ids.get(token)
            if term is not None:
                rows.append(slice(indptr[term], indptr[term + 1]))
        if not rows:
            return np.zeros(len(self), dtype=np.float64)
        # bincount adds the weights into a zeroed array in the order given, which is query
        # order: the same additions in the same order as rank-bm25's loop (whose additions
        # of 0 for documents without the term change nothing), in one C pass.
        return np.bincount(
            np.concatenate([self._indices[r] for r in rows]),
            weights=np.concatenate([self._data[r] for r in rows]),
            minlength=len(self),
        )

    def top_k(
        self, query_tokens: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` best ``(document index, score)`` pairs, best first.

        Ties are broken by the lower document index, so the order equals a stable sort of
        all scores, descending (documents scoring 0 are included when fewer than ``k`` score
        more, as in rank-bm25's ``get_top_n``). ``allowed``, a boolean mask with one entry
        per document, restricts the candidates (metadata filters); fewer than ``k`` pairs
        come back when fewer documents are allowed.
        """
        return self.top_k_of(self.scores(query_tokens), k, allowed)

    def top_k_of(
        self, scores: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """`top_k` over scores already computed by `scores` (a caller that needs them too
        scores the query once)."""
        k = int(k)
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if allowed is not None:
            allowed = np.asarray(allowed)
            if allowed.dtype != np.bool_ or allowed.shape != (len(self),):
                raise ValueError(
                    f"allowed must be a boolean mask of shape ({len(self)},), "
                    f"got {allowed.dtype} {allowed.shape}"
                )
        # Fast path: when at least k allowed documents score above 0, the best k are among
        # them (every other document scores 0 or less), and selecting among the few documents
        # that share a term with the query is much cheaper than among all of them.
        mask = scores > 0
        if allowed is not None:
            mask &= allowed
        candidates = np.flatnonzero(mask)
        if candidates.size < k:
            candidates = np.flatnonzero(allowed) if allowed is not None else None
        values = scores if candidates is None else scores[candidates]
        chosen = _top_positions(values, k)
        docs = chosen if candidates is None else candidates[chosen]
        return list(zip(docs.tolist(), values[chosen].tolist(), strict=True))

    # ------------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        """Write the index into the directory ``path`` (created if needed).

        Two files: ``bm25.npz`` with the numeric arrays and ``vocab.json`` with the
        vocabulary, parameters and format version. No pickle anywhere, so loading a file
        from elsewhere cannot run code. Each file is written to a temporary name and renamed,
        so a crash never leaves a half-written file under the final name; both files carry the
        same random ``save_id``, so a pair from two different saves is refused on load.
        """
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        save_id = uuid.uuid4().hex
        arrays = {
            "save_id": np.array(save_id),  # a fixed-width unicode array: no pickle needed
            "indptr": self._indptr,
            "indices": self._indices,
            "data": self._data,
            "idf": self.idf,
            "doc_len": self.doc_len,
            "params": np.array(
                [self.k1, self.b, self.epsilon, self.avgdl, self.average_idf], dtype=np.float64
            ),
        }
        meta = {
            "format": _FORMAT,
            "version": _VERSION,
            "save_id": save_id,
            "num_docs": len(self),
            "num_terms": len(self.vocabulary),
            # Also in `params` (exact float64); repeated here for people reading the file.
            "k1": self.k1,
            "b": self.b,
            "epsilon": self.epsilon,
            "vocabulary": self.vocabulary,
        }
        with atomic_file(directory / _ARRAYS_FILE) as handle:
            np.savez(handle, **arrays)  # numeric and unicode arrays only: never pickled
        with atomic_file(directory / _VOCAB_FILE) as handle:
            handle.write(json.dumps(meta, allow_nan=False).encode("ascii"))

    @classmethod
    def load(cls, path: str | Path) -> BM25Index:
        """Read an index written by :meth:`save` (``allow_pickle=False``)."""
        directory = Path(path)
        with (directory / _VOCAB_FILE).open(encoding="ascii") as handle:
            meta = json.load(handle)
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise ValueError(
                f"{directory / _VOCAB_FILE} is not a {_FORMAT} index of version {_VERSION}: "
                f"format={meta.get('format')!r}, version={meta.get('version')!r}"
            )
        with np.load(directory / _ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        if str(arrays.pop("save_id")) != meta.get("save_id"):
            raise ValueError(
                f"{directory}: {_ARRAYS_FILE} and {_VOCAB_FILE} are from different saves"
            )
        vocabulary = meta["vocabulary"]
        n_docs = int(meta["num_docs"])
        if len(vocabulary) != meta["num_terms"] or arrays["indptr"].shape != (
            len(vocabulary) + 1,
        ):
            raise ValueError(f"{directory}: vocabulary and arrays disagree on the term count")
        weights = sparse.csr_array(
            (arrays["data"], arrays["indices"], arrays["indptr"]),
            shape=(len(vocabulary), n_docs),
        )
        k1, b, epsilon, avgdl, average_idf = arrays["params"].tolist()
        return cls(
            vocabulary=vocabulary, idf=arrays["idf"], doc_len=arrays["doc_len"],
            weights=weights, k1=k1, b=b, epsilon=epsilon, avgdl=avgdl,
            average_idf=average_idf,
        )


def _okapi_idf(doc_freq: np.ndarray, n_docs: int, epsilon: float) -> tuple[np.ndarray, float]:
    """rank-bm25's ``BM25Okapi._calc_idf``: idf per term and the average idf before the floor.

    The logs use :func:`math.log` (numpy's vectorised log may differ in the last bit) once per
    distinct document frequency; the sum is sequential in term order (np.cumsum accumulates
    left to right, like rank-bm25's ``idf_sum += idf``).
    """
    if doc_freq.size == 0:  # only empty documents: rank-bm25 divides by zero here
        return np.zeros(0, dtype=np.float64), 0.0
    distinct, inverse = np.unique(doc_freq, return_inverse=True)
    table = np.array(
        [math.log(n_docs - n + 0.5) - math.log(n + 0.5) for n in distinct.tolist()],
        dtype=np.float64,
    )
    idf = table[inverse]
    average_idf = float(np.cumsum(idf)[-1]) / len(idf)
    idf[idf < 0] = epsilon * average_idf
    return idf, average_idf


def _top_positions(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values, descending, ties by lower position.

    np.argpartition picks arbitrarily among values tied with the k-th largest, so only the
    strictly greater ones are taken from it; the tied ones are then filled in by position.
    """
    n = values.size
    if k == 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        kth = values[np.argpartition(values, n - k)[n - k]]  # the k-th largest value
        above = np.flatnonzero(values > kth)
        tied = np.flatnonzero(values == kth)[: k - above.size]
        positions = np.union1d(above, tied)  # sorted by position
    else:
        positions = np.arange(n)
    order = np.argsort(-values[positions], kind="stable")
    return positions[order]
