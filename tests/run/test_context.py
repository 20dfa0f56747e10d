"""Splits, cached neighbours (self excluded, matched by row) and seeded selections for a run."""

import numpy as np
import pytest

from icma_jax import config as cfg_lib
from icma_jax.run import context


def _cfg(shared_data, **data):
    d = cfg_lib.default_config_dict().to_dict()
    d["data"].update(dict(data_dir=str(shared_data), task="cap2mol", database_split="validation",
                          train_split="validation", test_split="test", database_limit=60, train_limit=8,
                          test_start=5, test_limit=3), **data)
    d["retrieval"].update(method="bm25", num_candidates=4)
    d["selection"].update(n_examples=2, strategy="random_walk", p_skip=0.5)
    return cfg_lib.from_config_dict(d)


def test_splits_neighbours_and_selection(shared_data, tmp_path):
    cfg = _cfg(shared_data)
    splits = context.load_splits(cfg.data)
    assert (len(splits.database), len(splits.train), len(splits.test)) == (60, 8, 3)
    assert list(splits.test.rows) == [5, 6, 7] and splits.valid is None
    nb = context.neighbours_for_run(cfg, splits, tmp_path)
    assert (tmp_path / "neighbours" / "train.jsonl").is_file()
    for q, pos in enumerate(nb.train):
        assert len(pos) == 4 and q not in pos  # train query q is database row q: excluded
    again = context.neighbours_for_run(cfg, splits, tmp_path)  # read back from the cache, by query row
    assert all(np.array_equal(a, b) for a, b in zip(nb.train + nb.test, again.train + again.test))
    selection = context.selection_config(cfg, seed=3)
    chosen = context.select_examples(nb.train, selection)
    assert all(np.array_equal(a, b) for a, b in zip(chosen, context.select_examples(nb.train, selection)))
    assert all(len(c) == 2 and set(c) <= set(p) for c, p in zip(chosen, nb.train))
    ranks = [list(p).index(c[0]) < list(p).index(c[1]) for c, p in zip(chosen, nb.train)]
    assert all(ranks)  # most similar first; reversal happens in the prompt


def test_neighbour_files_must_cover_every_query(shared_data, tmp_path):
    cfg = _cfg(shared_data)
    context.neighbours_for_run(cfg, context.load_splits(cfg.data), tmp_path)
    more = _cfg(shared_data, train_limit=12)
    with pytest.raises(ValueError, match="no neighbours for query row 8"):
        context.neighbours_for_run(more, context.load_splits(more.data), tmp_path)
    with pytest.raises(ValueError, match="past the end"):
        context.load_splits(_cfg(shared_data, test_start=99999).data)
