"""Stable top-k over dense score matrices: best first, ties broken by lower database row.

Legend: Q queries, D database rows, K neighbours, P candidate (query, row) pairs.
"""

import numpy as np


def topk_candidates(scores_QxD: np.ndarray, k: int, tol: float | np.ndarray = 0.0,
                    zero_is_exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All (query, row) pairs whose score is within `tol` (scalar or per query) of the query's k-th best
    score, or better; `-inf` marks excluded rows, which are never candidates.

    A strided column sample gives a lower bound of each k-th score without sorting whole rows; only the
    pairs above that bound are sorted. With `zero_is_exact` (scores of exactly 0 are exact and tie), only
    the first `k` zero-score rows of a query are kept. Returns `(q_P, d_P)` grouped by query, rows ascending.
    """
    if k < 1:
        raise ValueError(f"top-k: k must be >= 1, got {k}")
    n_q, n_d = scores_QxD.shape
    tol_Q = np.broadcast_to(np.asarray(tol, dtype=scores_QxD.dtype), (n_q,))
    kk = min(k, n_d)
    stride = max(1, int(np.sqrt(n_d / (16 * kk))))
    sample_QxS = scores_QxD[:, ::stride]
    kk_s = min(kk, sample_QxS.shape[1])
    n_s = sample_QxS.shape[1]
    bound_Q = np.partition(sample_QxS, n_s - kk_s, axis=1)[:, n_s - kk_s]  # <= the true k-th score
    flat_P = np.flatnonzero(scores_QxD >= (bound_Q - tol_Q)[:, None])
    s_P = scores_QxD.ravel()[flat_P]
    keep = np.isfinite(s_P)
    if zero_is_exact:
        zero = np.flatnonzero(s_P == 0)
        zq = flat_P[zero] // n_d
        keep[zero[np.arange(len(zero)) - np.searchsorted(zq, zq) >= kk]] = False
    flat_P, s_P = flat_P[keep], s_P[keep]
    q_P, d_P = np.divmod(flat_P, n_d)
    order = np.lexsort((d_P, -s_P, q_P))
    q_s, s_s = q_P[order], s_P[order]
    starts_Q = np.searchsorted(q_s, np.arange(n_q))
    counts_Q = np.bincount(q_s, minlength=n_q)
    kth_Q = np.full(n_q, -np.inf, dtype=s_P.dtype)
    full = counts_Q >= kk
    kth_Q[full] = s_s[starts_Q[full] + kk - 1]
    keep = s_P >= kth_Q[q_P] - tol_Q[q_P]
    return q_P[keep], d_P[keep]


def rank_pairs(q_P: np.ndarray, d_P: np.ndarray, s_P: np.ndarray, k: int, n_q: int
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per query, its `k` best pairs sorted by (score desc, row asc); queries without pairs get none."""
    order = np.lexsort((d_P, -s_P, q_P))
    q_s, d_s, s_s = q_P[order], d_P[order], s_P[order]
    bounds = np.searchsorted(q_s, np.arange(n_q + 1))
    rows = [d_s[bounds[q]: min(bounds[q + 1], bounds[q] + k)].astype(np.int64) for q in range(n_q)]
    scores = [s_s[bounds[q]: min(bounds[q + 1], bounds[q] + k)].astype(np.float64) for q in range(n_q)]
    return rows, scores


def stable_topk(scores_QxD: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Rows and scores of each query's `k` best rows, as a stable descending sort would order them.

    Rows scored `-inf` are excluded (a query with fewer admissible rows gets fewer neighbours).
    """
    if np.isnan(scores_QxD).any():
        raise ValueError("top-k: scores contain NaN")
    q_P, d_P = topk_candidates(scores_QxD, k)
    return rank_pairs(q_P, d_P, scores_QxD[q_P, d_P], k, scores_QxD.shape[0])
