"""Okapi BM25 caption retrieval, bit-for-bit the scores of `rank_bm25` 0.2.2 `BM25Okapi` (ICMA_SPEC §2.1).

One index is built once (a sparse term x document matrix of per-term contributions); queries are scored
in batches. Each query token's contribution is added in query order with the same IEEE operations as
`rank_bm25.get_scores`, so scores are identical (not merely close) and ties break exactly as there.
Legend: Q queries, D documents, T distinct terms.
"""

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from icma_jax.retrieval.topk import rank_pairs, topk_candidates

K1, B, EPSILON = 1.5, 0.75, 0.25
_SPACE_CHARS = re.compile(r"[-,()]")
_SPACES = re.compile(r" +")


def tokenize(text: str) -> list[str]:
    """The original normalisation: strip; `-,()` -> space; drop `.`; collapse spaces; split on ' '."""
    text = _SPACE_CHARS.sub(" ", text.strip()).replace(".", "")
    return _SPACES.sub(" ", text).split(" ")


@dataclasses.dataclass(frozen=True)
class Bm25Index:
    """Vocabulary, idf and per-term contributions: `weights_TxD` (CSR) split into a dense block for the
    frequent terms (`dense_terms_F`, `dense_FxD`) and a sparse rest (`sparse_TxD`, frequent rows empty).
    `keys_Z` (= term * D + doc, sorted) indexes `weights_TxD.data` for exact per-pair look-ups."""

    vocab: dict[str, int]
    idf_T: np.ndarray
    weights_TxD: sp.csr_matrix
    dense_terms_F: np.ndarray
    dense_FxD: np.ndarray
    sparse_TxD: sp.csr_matrix
    keys_Z: np.ndarray
    term_max_T: np.ndarray
    dense_slot_T: np.ndarray
    dense64_FxD: np.ndarray
    avgdl: float

    @property
    def n_docs(self) -> int:
        return int(self.weights_TxD.shape[1])


def build_index(corpus: Sequence[str], k1: float = K1, b: float = B, epsilon: float = EPSILON,
                dense_min_df: float = 1 / 64) -> Bm25Index:
    """Tokenises `corpus` and builds the index; idf and avgdl are computed exactly as rank_bm25 does.

    Terms in at least `dense_min_df` of the documents go to a dense block scored by BLAS.
    """
    if len(corpus) == 0:
        raise ValueError("BM25: the database has no documents")
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    tfs: list[int] = []
    doc_len = np.empty(len(corpus), dtype=np.int64)
    for d, text in enumerate(corpus):
        tokens = tokenize(text)
        doc_len[d] = len(tokens)
        counts: dict[str, int] = {}
        for tok in tokens:
            counts[tok] = counts.get(tok, 0) + 1
        for tok, c in counts.items():
            rows.append(vocab.setdefault(tok, len(vocab)))
            cols.append(d)
            tfs.append(c)
    n = len(corpus)
    avgdl = int(doc_len.sum()) / n
    rows_a, cols_a = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    doc_freq = np.bincount(rows_a, minlength=len(vocab))
    # math.log (not np.log) and a sequential sum in first-seen order: the same floats as rank_bm25.
    idf = [math.log(n - int(f) + 0.5) - math.log(int(f) + 0.5) for f in doc_freq]
    idf_sum = 0.0
    for v in idf:
        idf_sum += v
    eps = epsilon * (idf_sum / len(idf))
    idf_T = np.asarray([eps if v < 0 else v for v in idf], dtype=np.float64)
    tf = np.asarray(tfs, dtype=np.float64)
    # The expression of rank_bm25.get_scores, operation for operation.
    norm_D = k1 * (1 - b + b * doc_len / avgdl)
    contrib = idf_T[rows_a] * (tf * (k1 + 1) / (tf + norm_D[cols_a]))
    weights = sp.csr_matrix((contrib, (rows_a, cols_a)), shape=(len(vocab), n))
    weights.sort_indices()
    dense_terms = np.flatnonzero(doc_freq >= dense_min_df * n)
    is_dense = np.zeros(len(vocab), bool)
    is_dense[dense_terms] = True
    sparse_rest = sp.diags((~is_dense).astype(np.float64)) @ weights
    sparse_rest.eliminate_zeros()
    dense_slot = np.full(len(vocab), -1, dtype=np.int64)
    dense_slot[dense_terms] = np.arange(len(dense_terms))
    dense64 = weights[dense_terms].toarray()
    keys = np.repeat(np.arange(len(vocab), dtype=np.int64), np.diff(weights.indptr)) * n + weights.indices
    return Bm25Index(vocab=vocab, idf_T=idf_T, weights_TxD=weights, dense_terms_F=dense_terms,
                     dense_FxD=dense64.astype(np.float32),
                     sparse_TxD=sp.csr_matrix(sparse_rest, dtype=np.float32), keys_Z=keys,
                     term_max_T=weights.max(axis=1).toarray().ravel(), dense_slot_T=dense_slot,
                     dense64_FxD=dense64, avgdl=avgdl)


def _token_ids(index: Bm25Index, queries: Sequence[str]) -> list[list[int]]:
    return [[index.vocab.get(t, -1) for t in tokenize(q)] for q in queries]


def _count_matrix(index: Bm25Index, token_ids: list[list[int]]) -> sp.csr_matrix:
    q = np.repeat(np.arange(len(token_ids)), [sum(t >= 0 for t in ids) for ids in token_ids])
    t = np.asarray([t for ids in token_ids for t in ids if t >= 0], dtype=np.int64)
    return sp.csr_matrix((np.ones(len(t)), (q, t)), shape=(len(token_ids), len(index.vocab)))


def score_batch(index: Bm25Index, queries: Sequence[str]) -> np.ndarray:
    """Fast float32 BM25 scores `QxD` (rank_bm25's up to float32 rounding; `topk` returns exact ones)."""
    return _fast_scores(index, _count_matrix(index, _token_ids(index, queries)))


def _fast_scores(index: Bm25Index, counts_QxT: sp.csr_matrix) -> np.ndarray:
    scores_QxD = counts_QxT[:, index.dense_terms_F].toarray().astype(np.float32) @ index.dense_FxD
    rest = counts_QxT.astype(np.float32) @ index.sparse_TxD
    rows = np.repeat(np.arange(counts_QxT.shape[0]), np.diff(rest.indptr))
    scores_QxD.ravel()[rows * index.n_docs + rest.indices] += rest.data  # (query, doc) pairs are unique
    return scores_QxD


def exact_scores(index: Bm25Index, token_ids: list[list[int]], q_P: np.ndarray, d_P: np.ndarray) -> np.ndarray:
    """rank_bm25's exact floats for (query, doc) pairs: contributions summed in query-token order."""
    known = [np.asarray([t for t in ids if t >= 0], dtype=np.int64) for ids in token_ids]
    lens_Q = np.asarray([len(t) for t in known], dtype=np.int64)
    flat_tok = np.concatenate(known) if known else np.zeros(0, np.int64)
    tok_start_Q = np.cumsum(lens_Q) - lens_Q
    lens_P = lens_Q[q_P]
    # For each pair, its query's tokens in order: pair-major, so bincount adds them in query order.
    pair_X = np.repeat(np.arange(len(q_P)), lens_P)
    offs_X = np.arange(lens_P.sum()) - np.repeat(np.cumsum(lens_P) - lens_P, lens_P)
    tok_X = flat_tok[np.repeat(tok_start_Q[q_P], lens_P) + offs_X]
    doc_X = d_P[pair_X]
    slot_X = index.dense_slot_T[tok_X]
    val_X = index.dense64_FxD[np.maximum(slot_X, 0), doc_X]  # frequent terms: a direct look-up
    rare = np.flatnonzero(slot_X < 0)
    key_R = tok_X[rare] * index.n_docs + doc_X[rare]  # the rest: binary search in (term, doc) keys
    pos_R = np.minimum(np.searchsorted(index.keys_Z, key_R), len(index.keys_Z) - 1)
    val_X[rare] = np.where(index.keys_Z[pos_R] == key_R, index.weights_TxD.data[pos_R], 0.0)
    return np.bincount(pair_X, weights=val_X, minlength=len(q_P))  # sequential: adds in input order


def topk(index: Bm25Index, queries: Sequence[str], k: int, excluded: Sequence[np.ndarray] | None = None
         ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each query's `k` best documents and their exact rank_bm25 scores, stable order (ties: lower row).

    Fast scores pick the candidates within 1e-9 (relative) of the k-th score; those are re-scored
    exactly, so order and scores equal a stable sort of rank_bm25's `get_scores`.
    `excluded[q]` lists document rows query q must not return.
    """
    token_ids = _token_ids(index, queries)
    counts_QxT = _count_matrix(index, token_ids)
    scores_QxD = _fast_scores(index, counts_QxT)
    if excluded is not None:
        for qi, rows in enumerate(excluded):
            scores_QxD[qi, np.asarray(rows, dtype=np.int64)] = -np.inf
    # float32 error bound: (tokens + 4) roundings of 2^-23 relative, of an upper bound of every score.
    n_tok_Q = np.asarray([len(t) for t in token_ids], dtype=np.float64)
    bound_Q = counts_QxT @ index.term_max_T
    tol_Q = ((n_tok_Q + 4) * 2.0 ** -22 * bound_Q).astype(np.float32)
    nonneg = bool(index.idf_T.min(initial=0.0) >= 0)
    q_P, d_P = topk_candidates(scores_QxD, k, tol_Q, zero_is_exact=nonneg)
    s_P = scores_QxD[q_P, d_P].astype(np.float64)
    # With non-negative contributions a fast score of exactly 0 means no shared term: exact 0 as well.
    redo = (s_P != 0.0) if nonneg else np.ones(len(s_P), bool)
    s_P[redo] = exact_scores(index, token_ids, q_P[redo], d_P[redo])
    return rank_pairs(q_P, d_P, s_P, k, len(queries))


def idf_of(index: Bm25Index, token: str) -> float:
    """The idf rank_bm25 would use for `token` (0 for unknown tokens)."""
    i = index.vocab.get(token)
    return 0.0 if i is None else float(index.idf_T[i])
