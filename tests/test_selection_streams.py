"""Each query draws its selection from its own random stream: what one query gets does not depend on the
other queries' candidates (batch composition, a restart on a subset), in the library and in the run."""

import numpy as np

from icma_jax.run import context
from icma_jax.retrieval.rerank import SelectionConfig, select_all

WALK = SelectionConfig(n_examples=3, strategy="random_walk", p_skip=0.5, seed=11)


def _candidates(n_queries: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(1000)[: int(rng.integers(6, 12))] for _ in range(n_queries)]


def _others_changed(cands: list[np.ndarray]) -> list[np.ndarray]:
    """Every even query gets another candidate list (and length, so a shared stream would shift)."""
    return [np.arange(500, 500 + 4 + q % 3) if q % 2 == 0 else c for q, c in enumerate(cands)]


def test_select_all_per_query_selection_ignores_other_queries():
    cands = _candidates(24, 0)
    before, after = select_all(cands, WALK), select_all(_others_changed(cands), WALK)
    for q in range(1, len(cands), 2):
        assert before[q].tolist() == after[q].tolist(), f"query {q}'s selection changed with other queries"
    assert len({tuple(x) for x in select_all([np.arange(10)] * 12, WALK)}) > 1  # queries do not share one seed


def test_select_examples_per_query_selection_ignores_other_queries():
    cands = _candidates(24, 1)
    before = context.select_examples(cands, WALK)
    after = context.select_examples(_others_changed(cands), WALK)
    for q in range(1, len(cands), 2):
        assert before[q].tolist() == after[q].tolist(), f"query {q}'s selection changed with other queries"
    assert len({tuple(x) for x in context.select_examples([np.arange(10)] * 12, WALK)}) > 1
