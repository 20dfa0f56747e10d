"""Stable top-k over dense score matrices: best first, ties broken by lower database row.

Dims (package legend): Q queries, G database rows (a strided sample of them in `sample_QxG`), C candidate
(query, row) pairs.
"""

import numpy as np


def topk_candidates(scores_QxG: np.ndarray, k: int, tol: float | np.ndarray = 0.0,
                    zero_is_exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All (query, row) pairs whose score is within `tol` (scalar or per query) of the query's k-th best
    score, or better; `-inf` marks excluded rows, which are never candidates.

    A strided column sample gives a lower bound of each k-th score without sorting whole rows; only the
    pairs above that bound are sorted. With `zero_is_exact` (scores of exactly 0 are exact and tie), only
    the first `k` zero-score rows of a query are kept. Returns `(q_C, g_C)` grouped by query, rows ascending.
    """
    if k < 1:
        raise ValueError(f"top-k: k must be >= 1, got {k}")
    n_q, n_d = scores_QxG.shape
    tol_Q = np.broadcast_to(np.asarray(tol, dtype=scores_QxG.dtype), (n_q,))
    kk = min(k, n_d)
    stride = max(1, int(np.sqrt(n_d / (16 * kk))))
    sample_QxG = scores_QxG[:, ::stride]
    kk_s = min(kk, sample_QxG.shape[1])
    n_s = sample_QxG.shape[1]
    bound_Q = np.partition(sample_QxG, n_s - kk_s, axis=1)[:, n_s - kk_s]  # <= the true k-th score
    flat_C = np.flatnonzero(scores_QxG >= (bound_Q - tol_Q)[:, None])
    s_C = scores_QxG.ravel()[flat_C]
    keep = np.isfinite(s_C)
    if zero_is_exact:
        zero = np.flatnonzero(s_C == 0)
        zq = flat_C[zero] // n_d
        keep[zero[np.arange(len(zero)) - np.searchsorted(zq, zq) >= kk]] = False
    flat_C, s_C = flat_C[keep], s_C[keep]
    q_C, g_C = np.divmod(flat_C, n_d)
    order = np.lexsort((g_C, -s_C, q_C))
    q_s, s_s = q_C[order], s_C[order]
    starts_Q = np.searchsorted(q_s, np.arange(n_q))
    counts_Q = np.bincount(q_s, minlength=n_q)
    kth_Q = np.full(n_q, -np.inf, dtype=s_C.dtype)
    full = counts_Q >= kk
    kth_Q[full] = s_s[starts_Q[full] + kk - 1]
    keep = s_C >= kth_Q[q_C] - tol_Q[q_C]
    return q_C[keep], g_C[keep]


def rank_pairs(q_C: np.ndarray, g_C: np.ndarray, s_C: np.ndarray, k: int, n_q: int
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per query, its `k` best pairs sorted by (score desc, row asc); queries without pairs get none."""
    order = np.lexsort((g_C, -s_C, q_C))
    q_s, d_s, s_s = q_C[order], g_C[order], s_C[order]
    bounds = np.searchsorted(q_s, np.arange(n_q + 1))
    rows = [d_s[bounds[q]: min(bounds[q + 1], bounds[q] + k)].astype(np.int64) for q in range(n_q)]
    scores = [s_s[bounds[q]: min(bounds[q + 1], bounds[q] + k)].astype(np.float64) for q in range(n_q)]
    return rows, scores


def stable_topk(scores_QxG: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Rows and scores of each query's `k` best rows, as a stable descending sort would order them.

    Rows scored `-inf` are excluded (a query with fewer admissible rows gets fewer neighbours).
    """
    if np.isnan(scores_QxG).any():
        raise ValueError("top-k: scores contain NaN")
    q_C, g_C = topk_candidates(scores_QxG, k)
    return rank_pairs(q_C, g_C, scores_QxG[q_C, g_C], k, scores_QxG.shape[0])
