"""Stable top-k equals a stable descending sort, with heavy ties, exclusions (-inf) and short rows."""

import numpy as np
import pytest

from icma_jax.retrieval.topk import stable_topk, topk_candidates


@pytest.mark.parametrize("n_d,k", [(1, 1), (7, 10), (50, 5), (3000, 10)])
def test_equals_stable_argsort(n_d, k):
    rng = np.random.default_rng(n_d)
    scores = rng.integers(0, 6, size=(40, n_d)).astype(np.float64)  # many exact ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf  # excluded rows
    scores[3] = 0.0  # a row of one big tie
    rows, vals = stable_topk(scores, k)
    for q in range(len(scores)):
        finite = np.isfinite(scores[q])
        order = [d for d in np.argsort(-scores[q], kind="stable") if finite[d]][:k]
        assert rows[q].tolist() == order
        np.testing.assert_array_equal(vals[q], scores[q][order])


def test_tolerance_widens_the_candidates():
    scores = np.array([[1.0, 0.9999, 0.5, 0.99995]])
    q, d = topk_candidates(scores, 1, tol=1e-3)
    assert sorted(d.tolist()) == [0, 1, 3]
    q, d = topk_candidates(scores, 1)
    assert d.tolist() == [0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be"):
        stable_topk(np.zeros((1, 3)), 0)
    with pytest.raises(ValueError, match="NaN"):
        stable_topk(np.array([[np.nan, 1.0]]), 1)
