"""Selection after retrieval: top-n, offset, bucket, Sequence Reversal, and Random Walk statistics."""

import numpy as np
import pytest

from icma_jax.retrieval.rerank import SelectionConfig, prompt_order, select, select_all

CAND = np.arange(100, 110)  # ten candidates, best first


def test_top_offset_and_reversal():
    assert select(CAND, SelectionConfig(n_examples=3)).tolist() == [100, 101, 102]
    assert select(CAND, SelectionConfig(n_examples=3, offset=1)).tolist() == [101, 102, 103]
    assert select(CAND, SelectionConfig(n_examples=4, offset=8)).tolist() == [108, 109]  # fewer remain
    assert select(CAND, SelectionConfig(n_examples=0)).tolist() == []
    assert prompt_order([100, 101, 102], reverse=True).tolist() == [102, 101, 100]  # best right before the query
    assert prompt_order([100, 101], reverse=False).tolist() == [100, 101]


def test_bucket_matches_spec_formula():
    # K = 10, s = 1, n = 3: step = floor(9 / 3) = 3 -> ranks 1, 4, 7.
    assert select(CAND, SelectionConfig(n_examples=3, strategy="bucket", offset=1)).tolist() == [101, 104, 107]
    # step would be 0 (K - s < n): guarded to 1.
    assert select(CAND[:3], SelectionConfig(n_examples=5, strategy="bucket")).tolist() == [100, 101, 102]


def test_random_walk_is_seeded_and_keeps_rank_order():
    cfg = SelectionConfig(n_examples=3, strategy="random_walk", p_skip=0.5)
    a = select(CAND, cfg, np.random.default_rng(7))
    b = select(CAND, cfg, np.random.default_rng(7))
    assert a.tolist() == b.tolist() and np.all(np.diff(a) > 0)
    assert select(CAND, SelectionConfig(n_examples=3, strategy="random_walk", p_skip=0.0),
                  np.random.default_rng(0)).tolist() == [100, 101, 102]
    with pytest.raises(ValueError, match="seeded numpy Generator"):
        select(CAND, cfg, None)


def test_random_walk_statistics_are_geometric():
    # n = 1 from 10 candidates: P(rank r) = p^r (1 - p) for r < 9, and the rest p^9 at the last rank.
    p, draws = 0.3, 20000
    rng = np.random.default_rng(0)
    cfg = SelectionConfig(n_examples=1, strategy="random_walk", p_skip=p)
    ranks = np.array([select(np.arange(10), cfg, rng)[0] for _ in range(draws)])
    expected = np.array([p ** r * (1 - p) for r in range(9)] + [p ** 9])
    observed = np.bincount(ranks, minlength=10) / draws
    tol = 4 * np.sqrt(expected * (1 - expected) / draws) + 1e-4  # 4 standard errors
    assert np.all(np.abs(observed - expected) <= tol), (observed, expected)


def test_random_walk_never_runs_out_of_candidates():
    cfg = SelectionConfig(n_examples=4, strategy="random_walk", p_skip=0.95)
    rng = np.random.default_rng(1)
    for _ in range(500):
        got = select(np.arange(6), cfg, rng)
        assert len(got) == 4 and np.all(np.diff(got) > 0)


def test_select_all_is_reproducible_per_query_and_epoch():
    cfg = SelectionConfig(n_examples=2, strategy="random_walk", p_skip=0.4, seed=3)
    cands = [np.arange(10) + 10 * q for q in range(20)]
    a, b = select_all(cands, cfg), select_all(cands, cfg)
    assert all(x.tolist() == y.tolist() for x, y in zip(a, b))
    assert all(np.all(np.diff(x) < 0) for x in a)  # reversed: prompt order
    assert select_all(cands[5:6], cfg)[0].tolist() != [] and any(
        x.tolist() != y.tolist() for x, y in zip(a, select_all(cands, cfg, epoch=1)))


def test_config_validation_and_offset():
    with pytest.raises(ValueError, match="strategy"):
        SelectionConfig(strategy="best")
    with pytest.raises(ValueError, match="p_skip"):
        SelectionConfig(p_skip=1.0)
    assert select(CAND, SelectionConfig(n_examples=2, offset=1)).tolist() == [101, 102]
