"""Okapi BM25 caption retrieval, bit-for-bit the scores of `rank_bm25` 0.2.2 `BM25Okapi` (ICMA_SPEC §2.1).

One index is built once (a sparse term x document matrix of per-term contributions); queries are scored
in batches. Each query token's contribution is added in query order with the same IEEE operations as
`rank_bm25.get_scores`, so scores are identical (not merely close) and ties break exactly as there.
Dims (package legend): Q queries, G database rows (one caption each), V distinct terms, C candidate pairs;
a selection of terms keeps V (`dense_VxG`: the frequent terms' rows, term ids in `dense_terms_V`).
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
    """Vocabulary, idf and per-term contributions: `weights_VxG` (CSR) split into a dense block for the
    frequent terms (`dense_terms_V`, `dense_VxG`) and a sparse rest (`sparse_VxG`, frequent rows empty).
    `pair_keys` (= term * G + row, sorted) indexes `weights_VxG.data` for exact per-pair look-ups."""

    vocab: dict[str, int]
    idf_V: np.ndarray
    weights_VxG: sp.csr_matrix
    dense_terms_V: np.ndarray
    dense_VxG: np.ndarray
    sparse_VxG: sp.csr_matrix
    pair_keys: np.ndarray
    term_max_V: np.ndarray
    dense_slot_V: np.ndarray
    dense64_VxG: np.ndarray
    avgdl: float

    @property
    def n_docs(self) -> int:
        return int(self.weights_VxG.shape[1])


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
    idf_V = np.asarray([eps if v < 0 else v for v in idf], dtype=np.float64)
    tf = np.asarray(tfs, dtype=np.float64)
    # The expression of rank_bm25.get_scores, operation for operation.
    norm_G = k1 * (1 - b + b * doc_len / avgdl)
    contrib = idf_V[rows_a] * (tf * (k1 + 1) / (tf + norm_G[cols_a]))
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
    return Bm25Index(vocab=vocab, idf_V=idf_V, weights_VxG=weights, dense_terms_V=dense_terms,
                     dense_VxG=dense64.astype(np.float32),
                     sparse_VxG=sp.csr_matrix(sparse_rest, dtype=np.float32), pair_keys=keys,
                     term_max_V=weights.max(axis=1).toarray().ravel(), dense_slot_V=dense_slot,
                     dense64_VxG=dense64, avgdl=avgdl)


def _token_ids(index: Bm25Index, queries: Sequence[str]) -> list[list[int]]:
    return [[index.vocab.get(t, -1) for t in tokenize(q)] for q in queries]


def _count_matrix(index: Bm25Index, token_ids: list[list[int]]) -> sp.csr_matrix:
    q = np.repeat(np.arange(len(token_ids)), [sum(t >= 0 for t in ids) for ids in token_ids])
    t = np.asarray([t for ids in token_ids for t in ids if t >= 0], dtype=np.int64)
    return sp.csr_matrix((np.ones(len(t)), (q, t)), shape=(len(token_ids), len(index.vocab)))


def score_batch(index: Bm25Index, queries: Sequence[str]) -> np.ndarray:
    """Fast float32 BM25 scores `QxG` (rank_bm25's up to float32 rounding; `topk` returns exact ones)."""
    return _fast_scores(index, _count_matrix(index, _token_ids(index, queries)))


def _fast_scores(index: Bm25Index, counts_QxV: sp.csr_matrix) -> np.ndarray:
    scores_QxG = counts_QxV[:, index.dense_terms_V].toarray().astype(np.float32) @ index.dense_VxG
    rest = counts_QxV.astype(np.float32) @ index.sparse_VxG
    rows = np.repeat(np.arange(counts_QxV.shape[0]), np.diff(rest.indptr))
    scores_QxG.ravel()[rows * index.n_docs + rest.indices] += rest.data  # (query, doc) pairs are unique
    return scores_QxG


def exact_scores(index: Bm25Index, token_ids: list[list[int]], q_C: np.ndarray, g_C: np.ndarray) -> np.ndarray:
    """rank_bm25's exact floats for (query, doc) pairs: contributions summed in query-token order."""
    known = [np.asarray([t for t in ids if t >= 0], dtype=np.int64) for ids in token_ids]
    lens_Q = np.asarray([len(t) for t in known], dtype=np.int64)
    flat_tok = np.concatenate(known) if known else np.zeros(0, np.int64)
    tok_start_Q = np.cumsum(lens_Q) - lens_Q
    lens_C = lens_Q[q_C]
    # One entry per (pair, query token), pair-major: bincount adds each pair's tokens in query order.
    entry_pair = np.repeat(np.arange(len(q_C)), lens_C)
    entry_off = np.arange(lens_C.sum()) - np.repeat(np.cumsum(lens_C) - lens_C, lens_C)
    entry_tok = flat_tok[np.repeat(tok_start_Q[q_C], lens_C) + entry_off]
    entry_row = g_C[entry_pair]
    entry_slot = index.dense_slot_V[entry_tok]
    entry_val = index.dense64_VxG[np.maximum(entry_slot, 0), entry_row]  # frequent terms: a direct look-up
    rare = np.flatnonzero(entry_slot < 0)
    rare_key = entry_tok[rare] * index.n_docs + entry_row[rare]  # the rest: binary search in (term, doc) keys
    rare_pos = np.minimum(np.searchsorted(index.pair_keys, rare_key), len(index.pair_keys) - 1)
    entry_val[rare] = np.where(index.pair_keys[rare_pos] == rare_key, index.weights_VxG.data[rare_pos], 0.0)
    return np.bincount(entry_pair, weights=entry_val, minlength=len(q_C))  # sequential: adds in input order


def topk(index: Bm25Index, queries: Sequence[str], k: int, excluded: Sequence[np.ndarray] | None = None
         ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each query's `k` best documents and their exact rank_bm25 scores, stable order (ties: lower row).

    Fast scores pick the candidates within 1e-9 (relative) of the k-th score; those are re-scored
    exactly, so order and scores equal a stable sort of rank_bm25's `get_scores`.
    `excluded[q]` lists document rows query q must not return.
    """
    token_ids = _token_ids(index, queries)
    counts_QxV = _count_matrix(index, token_ids)
    scores_QxG = _fast_scores(index, counts_QxV)
    if excluded is not None:
        for qi, rows in enumerate(excluded):
            scores_QxG[qi, np.asarray(rows, dtype=np.int64)] = -np.inf
    # float32 error bound: (tokens + 4) roundings of 2^-23 relative, of an upper bound of every score.
    n_tok_Q = np.asarray([len(t) for t in token_ids], dtype=np.float64)
    bound_Q = counts_QxV @ index.term_max_V
    tol_Q = ((n_tok_Q + 4) * 2.0 ** -22 * bound_Q).astype(np.float32)
    nonneg = bool(index.idf_V.min(initial=0.0) >= 0)
    q_C, g_C = topk_candidates(scores_QxG, k, tol_Q, zero_is_exact=nonneg)
    s_C = scores_QxG[q_C, g_C].astype(np.float64)
    # With non-negative contributions a fast score of exactly 0 means no shared term: exact 0 as well.
    redo = (s_C != 0.0) if nonneg else np.ones(len(s_C), bool)
    s_C[redo] = exact_scores(index, token_ids, q_C[redo], g_C[redo])
    return rank_pairs(q_C, g_C, s_C, k, len(queries))


def idf_of(index: Bm25Index, token: str) -> float:
    """The idf rank_bm25 would use for `token` (0 for unknown tokens)."""
    i = index.vocab.get(token)
    return 0.0 if i is None else float(index.idf_V[i])
