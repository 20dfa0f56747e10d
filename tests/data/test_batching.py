"""Left padding, length buckets, and the seeded, resumable host iterator."""

import numpy as np
import pytest

from icma_jax.data.batching import BatchIterator, bucket_for, pad_batch
from icma_jax.data.prompts import IGNORE, Encoded


def _seqs(lengths):
    return [Encoded(np.arange(1, n + 1, dtype=np.int32) + 100 * i,
                    np.concatenate([np.full(n // 2, IGNORE), np.arange(n // 2, n) + 1]).astype(np.int32), 0)
            for i, n in enumerate(lengths)]


def test_bucket_for():
    assert bucket_for(1, (4, 8)) == 4 and bucket_for(4, (4, 8)) == 4 and bucket_for(5, (4, 8)) == 8
    with pytest.raises(ValueError, match="largest bucket 8"):
        bucket_for(9, (4, 8))


def test_pad_batch_left_pads_and_fills_empty_rows():
    b = pad_batch(_seqs([3, 5]), length=6, batch_size=3, pad_id=0)
    assert b.tokens_BxL.dtype == b.mask_BxL.dtype == b.labels_BxL.dtype == np.int32
    np.testing.assert_array_equal(b.tokens_BxL[0], [0, 0, 0, 1, 2, 3])
    np.testing.assert_array_equal(b.mask_BxL[1], [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(b.labels_BxL[0], [IGNORE, IGNORE, IGNORE, IGNORE, 2, 3])
    assert (b.mask_BxL[2] == 0).all() and (b.labels_BxL[2] == IGNORE).all()


def test_every_sequence_once_per_epoch_in_its_bucket():
    lengths = [3, 7, 2, 8, 5, 1, 6, 4, 3, 9]
    it = BatchIterator(_seqs(lengths), batch_size=3, buckets=(4, 8, 16), pad_id=0, seed=0)
    assert it.bucket_counts() == {4: 5, 8: 4, 16: 1}
    assert it.batches_per_epoch == 2 + 2 + 1  # partial batches padded, none dropped
    seen = []
    for _ in range(it.batches_per_epoch):
        b = next(it)
        assert b.tokens_BxL.shape[0] == 3 and b.tokens_BxL.shape[1] in (4, 8, 16)
        for row, m in zip(b.tokens_BxL, b.mask_BxL):
            if m.any():
                seen.append(int(row[m == 1][0]) // 100)
                assert bucket_for(int(m.sum()), (4, 8, 16)) == b.tokens_BxL.shape[1]
    assert sorted(seen) == list(range(len(lengths)))
    assert it.state() == {"epoch": 0, "index": 5}
    next(it)
    assert it.state() == {"epoch": 1, "index": 1}


def test_seeded_shuffle_differs_per_epoch_and_resumes_exactly():
    seqs = _seqs([3, 4, 2, 1, 3, 4, 2, 1] * 2)
    a = BatchIterator(seqs, batch_size=2, buckets=(4,), pad_id=0, seed=7)
    order = [next(a).tokens_BxL for _ in range(20)]
    assert not all(np.array_equal(x, y) for x, y in zip(order[:8], order[8:16]))  # new shuffle per epoch
    b = BatchIterator(seqs, batch_size=2, buckets=(4,), pad_id=0, seed=7)
    for _ in range(11):
        next(b)
    c = BatchIterator(seqs, batch_size=2, buckets=(4,), pad_id=0, seed=7)
    c.restore(b.state())
    for want in order[11:20]:
        np.testing.assert_array_equal(next(c).tokens_BxL, want)
    d = BatchIterator(seqs, batch_size=2, buckets=(4,), pad_id=0, seed=8)
    assert not all(np.array_equal(next(d).tokens_BxL, want) for want in order[:8])


def test_sequences_redrawn_per_epoch_are_used_and_resumable():
    by_epoch = {e: _seqs([2 + e] * 4) for e in range(3)}  # each epoch: other sequences, other length
    it = BatchIterator(by_epoch[0], batch_size=2, buckets=(4, 8), pad_id=0, seed=1, seqs_for_epoch=by_epoch.get)
    lengths = [int(next(it).mask_BxL.sum(axis=1).max()) for _ in range(6)]
    assert lengths == [2, 2, 3, 3, 4, 4]
    it2 = BatchIterator(by_epoch[0], batch_size=2, buckets=(4, 8), pad_id=0, seed=1, seqs_for_epoch=by_epoch.get)
    it2.restore({"epoch": 2, "index": 1})
    assert int(next(it2).mask_BxL.sum(axis=1).max()) == 4
