"""Left padding, packing, length buckets, and the seeded, resumable host iterator."""

import numpy as np
import pytest

from icma_jax.data.batching import (Batch, BatchIterator, batch_from_labels, bucket_for, first_fit, loss_window,
                                    pack_batch, pad_batch)
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
    assert all(x.dtype == np.int32 for x in b)
    np.testing.assert_array_equal(b.tokens_BxL[0], [0, 0, 0, 1, 2, 3])
    np.testing.assert_array_equal(b.segment_ids_BxL[1], [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(b.targets_BxW[0], [IGNORE, IGNORE, IGNORE, 2, 3, IGNORE])  # shifted: t predicts t+1
    np.testing.assert_array_equal(b.target_pos_BxW, np.tile(np.arange(6), (3, 1)))
    assert (b.segment_ids_BxL[2] == 0).all() and (b.targets_BxW[2] == IGNORE).all()


def test_first_token_is_never_a_target_padded_or_packed():
    """train_on_inputs labels every token; nothing of a sequence precedes its first token, so neither layout
    makes it a target (left padding would otherwise let the last pad position predict it)."""
    seqs = [Encoded(np.arange(1, n + 1, dtype=np.int32), np.arange(1, n + 1, dtype=np.int32), 0) for n in (3, 5)]
    padded = pad_batch(seqs, length=6, batch_size=2, pad_id=0)
    np.testing.assert_array_equal(padded.targets_BxW[0], [IGNORE, IGNORE, IGNORE, 2, 3, IGNORE])
    np.testing.assert_array_equal(padded.targets_BxW[1], [IGNORE, 2, 3, 4, 5, IGNORE])
    packed = pack_batch([seqs], length=8, batch_size=1, pad_id=0)
    real = lambda b: sorted(b.targets_BxW[b.targets_BxW != IGNORE])  # noqa: E731
    assert real(packed) == real(padded)


def _labels_from(first_label_col: list[int], length: int, col_0: int = IGNORE) -> Batch:
    labels = np.full((len(first_label_col), length), IGNORE, np.int32)
    for i, c in enumerate(first_label_col):
        labels[i, c:] = 7
    labels[:, 0] = col_0
    return batch_from_labels(np.ones_like(labels), np.ones_like(labels), labels)


@pytest.mark.parametrize("first_cols,width", [
    ([60, 62], 8),  # answers in the last 4 and 2 columns: L/8
    ([60, 48], 16),  # column 48 needs the last 16
    ([60, 47], 32),  # one column more: L/4
    ([33], 32), ([32], 32), ([31], 64), ([1], 64),  # beyond L/2: the full width
    ([64], 8),  # no labels at all: the smallest window
])
def test_loss_window_is_the_smallest_that_drops_no_predictable_label(first_cols, width):
    batch = _labels_from(first_cols, 64)
    out = loss_window(batch)
    assert out.targets_BxW.shape == out.target_pos_BxW.shape == (len(first_cols), width)
    assert out.tokens_BxL is batch.tokens_BxL
    lo = 63 - width if width < 64 else 0  # a narrower window ends before position 63, which predicts nothing
    np.testing.assert_array_equal(out.targets_BxW, batch.targets_BxW[:, lo:lo + width])
    np.testing.assert_array_equal(out.target_pos_BxW, np.tile(np.arange(lo, lo + width), (len(first_cols), 1)))
    dropped = batch.targets_BxW[:, :lo]
    assert (dropped == IGNORE).all()


def test_loss_window_keeps_full_labels_when_the_prompt_is_trained_on():
    batch = _labels_from([1, 2], 64)
    assert loss_window(batch) is batch


def test_loss_window_may_drop_column_0_which_nothing_predicts():
    batch = _labels_from([62], 64, col_0=5)
    assert loss_window(batch).targets_BxW.shape == (1, 8)
    with pytest.raises(ValueError, match="full-width batch"):
        loss_window(loss_window(batch))


def test_every_sequence_once_per_epoch_in_its_bucket():
    lengths = [3, 7, 2, 8, 5, 1, 6, 4, 3, 9]
    it = BatchIterator(_seqs(lengths), batch_size=3, buckets=(4, 8, 16), pad_id=0, seed=0)
    assert it.bucket_counts() == {4: 5, 8: 4, 16: 1}
    assert it.batches_per_epoch == 2 + 2 + 1  # partial batches padded, none dropped
    assert it.real_share() == sum(lengths) / (3 * (4 + 4 + 8 + 8 + 16))
    seen = []
    for _ in range(it.batches_per_epoch):
        b = next(it)
        assert b.tokens_BxL.shape[0] == 3 and b.tokens_BxL.shape[1] in (4, 8, 16)
        for row, m in zip(b.tokens_BxL, b.segment_ids_BxL):
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
    lengths = [int(next(it).segment_ids_BxL.sum(axis=1).max()) for _ in range(6)]
    assert lengths == [2, 2, 3, 3, 4, 4]
    it2 = BatchIterator(by_epoch[0], batch_size=2, buckets=(4, 8), pad_id=0, seed=1, seqs_for_epoch=by_epoch.get)
    it2.restore({"epoch": 2, "index": 1})
    assert int(next(it2).segment_ids_BxL.sum(axis=1).max()) == 4


def test_pack_batch_segments_labels_and_gathered_loss_window():
    seqs = _seqs([4, 6, 3])
    b = pack_batch([seqs[:2], seqs[2:]], 12, 3, pad_id=0)
    np.testing.assert_array_equal(b.segment_ids_BxL[0], [0, 0] + [1] * 4 + [2] * 6)
    np.testing.assert_array_equal(b.segment_ids_BxL[1], [0] * 9 + [1] * 3)  # ids count within a row
    assert (b.segment_ids_BxL[2] == 0).all() and (b.targets_BxW[2] == IGNORE).all()
    np.testing.assert_array_equal(b.tokens_BxL[0, 2:], np.concatenate([seqs[0].ids, seqs[1].ids]))
    np.testing.assert_array_equal(b.targets_BxW[0, 1:11], np.concatenate([seqs[0].labels, seqs[1].labels]))
    w = loss_window(b, fractions=(4, 2))
    assert w.targets_BxW.shape == w.target_pos_BxW.shape == (3, 6)  # 5 targets in row 0; a tail needs 12
    for i in range(3):
        (pos,) = np.nonzero(b.targets_BxW[i] != IGNORE)
        np.testing.assert_array_equal(w.target_pos_BxW[i, :len(pos)], pos)  # the logits before each label
        np.testing.assert_array_equal(w.targets_BxW[i, :len(pos)], b.targets_BxW[i, pos])
        assert (w.targets_BxW[i, len(pos):] == IGNORE).all()
    with pytest.raises(ValueError, match="do not fit a packed row of 12"):
        pack_batch([seqs], 12, 3, pad_id=0)


def test_pack_batch_never_targets_a_sequence_start():
    """The token before a sequence belongs to another one: a label on the first token is dropped."""
    s = Encoded(np.array([5, 6, 7], np.int32), np.array([5, 6, 7], np.int32), 0)
    b = pack_batch([[s, s]], 6, 1, pad_id=0)
    np.testing.assert_array_equal(b.targets_BxW[0], [6, 7, IGNORE, 6, 7, IGNORE])


def test_packed_iterator_uses_every_sequence_once_and_resumes():
    lengths = [3, 7, 2, 8, 5, 1, 6, 4, 3, 9, 2, 5]
    make = lambda: BatchIterator(_seqs(lengths), batch_size=2, buckets=(16,), pad_id=0, seed=3,  # noqa: E731
                                 pack_length=10)
    it = make()
    assert it.bucket_counts() == {10: len(lengths)}
    batches = [next(it) for _ in range(it.batches_per_epoch)]
    seen = []
    for b in batches:
        assert b.tokens_BxL.shape == (2, 10)
        for row, seg in zip(b.tokens_BxL, b.segment_ids_BxL):
            seen += [int(row[seg == s][0]) // 100 for s in np.unique(seg[seg > 0])]
    assert sorted(seen) == list(range(len(lengths)))
    assert sum(int((b.segment_ids_BxL > 0).sum()) for b in batches) == sum(lengths)
    assert len(batches) < len(lengths) / 2  # rows really hold several sequences
    assert it.real_share() == sum(lengths) / (len(batches) * 2 * 10)
    again = make()
    again.restore({"epoch": 0, "index": 2})
    np.testing.assert_array_equal(next(again).tokens_BxL, batches[2].tokens_BxL)
    with pytest.raises(ValueError, match="longer than train.pack_length=8"):
        BatchIterator(_seqs(lengths), batch_size=2, buckets=(16,), pad_id=0, seed=3, pack_length=8).epoch_plan(0)


def test_first_fit_fills_earlier_rows_before_opening_new_ones():
    assert first_fit([5, 3, 4, 2], 7, 2) == [[[0, 3], [1, 2]]]
    assert first_fit([5, 3, 4, 2], 7, 1) == [[[0]], [[1, 2]], [[3]]]
