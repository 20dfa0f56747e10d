"""Fixed-shape padded batches, length buckets and the deterministic, resumable host iterator.

Dims (package legend): B batch rows, L tokens, W target positions. Sequences are left-padded (ICMA pads on the
left; the model derives positions from the mask) to the smallest bucket that holds them, so the train step
compiles once per bucket. Each epoch is a seeded shuffle: `epoch_plan(epoch)` depends only on (seed, epoch, lengths),
and the iterator position `(epoch, index)` is all a checkpoint needs to resume it exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from icma_jax.data.prompts import IGNORE, Encoded


class Batch(NamedTuple):
    """What the train step consumes, already shifted: the logits at position `target_pos_BxW[b, w]` of row b
    predict `targets_BxW[b, w]` (-100 = no target). A full-width batch (`batch_from_labels`) has W = L and
    position w predicting token w + 1; `loss_window` narrows it to the positions that carry targets."""

    tokens_BxL: np.ndarray  # int32
    segment_ids_BxL: np.ndarray  # int32, 0 on padding; 1 on real tokens, or each packed sequence's id 1, 2, ...
    targets_BxW: np.ndarray  # int32
    target_pos_BxW: np.ndarray  # int32, positions in 0 .. L-1


def batch_from_labels(tokens_BxL: np.ndarray, segment_ids_BxL: np.ndarray, labels_BxL: np.ndarray) -> Batch:
    """A full-width batch from labels aligned with the tokens (HF style, -100 = no loss): the target of
    position t is the label of t + 1; the last position predicts nothing."""
    b, length = labels_BxL.shape
    targets_BxL = np.concatenate([labels_BxL[:, 1:], np.full((b, 1), IGNORE, np.int32)], axis=1).astype(np.int32)
    target_pos_BxL = np.broadcast_to(np.arange(length, dtype=np.int32), (b, length)).copy()
    return Batch(np.asarray(tokens_BxL, np.int32), np.asarray(segment_ids_BxL, np.int32), targets_BxL, target_pos_BxL)


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= `length`."""
    for b in buckets:
        if length <= b:
            return b
    raise ValueError(f"sequence of {length} tokens is longer than the largest bucket {buckets[-1]}")


def pad_batch(seqs: Sequence[Encoded], length: int, batch_size: int, pad_id: int) -> Batch:
    """Left-pads `seqs` to `length` (a full-width batch, one sequence a row); rows past `len(seqs)` are all
    padding (segment id 0, no targets). As in packed rows, a sequence's first token is never a target: only
    padding precedes it (the original lets the last pad position predict it, in every row shorter than its
    micro-batch)."""
    if len(seqs) > batch_size:
        raise ValueError(f"{len(seqs)} sequences do not fit a batch of {batch_size}")
    for s in seqs:
        if len(s.ids) > length:
            raise ValueError(f"sequence of {len(s.ids)} tokens does not fit length {length}")
    return pack_batch([[s] for s in seqs], length, batch_size, pad_id)


def pack_batch(rows: Sequence[Sequence[Encoded]], length: int, batch_size: int, pad_id: int) -> Batch:
    """Several sequences per row (a full-width batch): row i holds `rows[i]` back to back, left-padded to
    `length`, with segment ids 1, 2, ... (the model keeps them apart and restarts positions). A sequence's
    first token is never a target (what precedes it belongs to another sequence)."""
    if len(rows) > batch_size:
        raise ValueError(f"{len(rows)} packed rows do not fit a batch of {batch_size}")
    tokens_BxL = np.full((batch_size, length), pad_id, np.int32)
    segment_ids_BxL = np.zeros((batch_size, length), np.int32)
    labels_BxL = np.full((batch_size, length), IGNORE, np.int32)
    for i, row in enumerate(rows):
        n = sum(len(s.ids) for s in row)
        if n > length:
            raise ValueError(f"{len(row)} sequences of {n} tokens do not fit a packed row of {length}")
        at = length - n
        for seg, s in enumerate(row, start=1):
            stop = at + len(s.ids)
            tokens_BxL[i, at:stop], segment_ids_BxL[i, at:stop] = s.ids, seg
            labels_BxL[i, at + 1:stop] = s.labels[1:]
            at = stop
    return batch_from_labels(tokens_BxL, segment_ids_BxL, labels_BxL)


def first_fit(lengths: Sequence[int], pack_length: int, rows_per_batch: int) -> list[list[list[int]]]:
    """Sequences in the given order, each into the first row of the current batch with room (a new row
    when none has, a new batch when it has `rows_per_batch` rows): [[indices into `lengths` per row] per batch]."""
    if max(lengths) > pack_length:
        raise ValueError(f"a sequence of {max(lengths)} tokens is longer than train.pack_length={pack_length}")
    batches, rows, used = [], [], []
    for i, n in enumerate(lengths):
        fit = next((r for r, u in enumerate(used) if u + n <= pack_length), None)
        if fit is None and len(rows) == rows_per_batch:
            batches.append(rows)
            rows, used = [], []
        if fit is None:
            rows.append([])
            used.append(0)
            fit = len(rows) - 1
        rows[fit].append(i)
        used[fit] += n
    return batches + [rows]


def loss_window(batch: Batch, fractions: Sequence[int] = (8, 4, 2)) -> Batch:
    """A full-width batch narrowed to W target positions, W the smallest of L/8, L/4, L/2 (else L) that drops
    no target; the train step then runs the vocabulary head on W positions instead of L.

    Left padding puts every answer at the end of its row, so without `train_on_inputs` the last W positions
    before the final one (W about the longest answer) hold every target. Packed rows have answers inside
    the row: then the W target-carrying positions of each row are gathered, when that needs a smaller W.
    A few W per bucket keep the number of compiled shapes small."""
    length = batch.tokens_BxL.shape[1]
    if batch.targets_BxW.shape[1] != length:
        raise ValueError(f"loss_window takes a full-width batch (W = L = {length}), "
                         f"got W = {batch.targets_BxW.shape[1]}")
    has_target_BxL = batch.targets_BxW != IGNORE
    has_target_L = has_target_BxL.any(axis=0)
    first = int(np.argmax(has_target_L)) if has_target_L.any() else length
    widths = sorted(length // f for f in fractions if 1 <= length // f < length) + [length]
    tail = next(w for w in widths if first >= length - 1 - w)  # positions L-1-w .. L-2 (L-1 predicts nothing)
    most = int(has_target_BxL.sum(axis=1).max())
    gathered = next((w for w in widths if w >= most), length)
    b = len(has_target_BxL)
    if gathered < tail:
        pos_BxW = np.zeros((b, gathered), np.int32)
        targets_BxW = np.full((b, gathered), IGNORE, np.int32)
        for i, row in enumerate(has_target_BxL):
            (cols,) = np.nonzero(row)
            pos_BxW[i, :len(cols)], targets_BxW[i, :len(cols)] = cols, batch.targets_BxW[i, cols]
        return batch._replace(targets_BxW=targets_BxW, target_pos_BxW=pos_BxW)
    if tail < length:
        cols = slice(length - 1 - tail, length - 1)
        return batch._replace(targets_BxW=np.ascontiguousarray(batch.targets_BxW[:, cols]),
                              target_pos_BxW=np.ascontiguousarray(batch.target_pos_BxW[:, cols]))
    return batch


def pad_prompts(prompts: Sequence[np.ndarray], length: int, batch_size: int, pad_id: int) -> Batch:
    """Left-padded inference prompts (no targets)."""
    return pad_batch([Encoded(p, np.full(len(p), IGNORE, np.int32), 0) for p in prompts], length,
                     batch_size, pad_id)


@dataclasses.dataclass(frozen=True)
class Position:
    """Where the iterator stands: the next batch is number `index` of epoch `epoch`."""

    epoch: int = 0
    index: int = 0


class BatchIterator:
    """Deterministic host iterator over bucketed batches; `position` / `restore` make it resumable."""

    def __init__(self, seqs: Sequence[Encoded], *, batch_size: int, buckets: Sequence[int], pad_id: int,
                 seed: int, shuffle: bool = True, seqs_for_epoch: Callable[[int], Sequence[Encoded]] | None = None,
                 pack_length: int = 0):
        """`seqs_for_epoch(epoch)` (optional) replaces `seqs` from epoch 1 on (selections redrawn per epoch).
        `pack_length` > 0: batches of `batch_size` packed rows of that many tokens (`pack_batch`) instead of
        one sequence per row; the number of sequences per batch then varies."""
        if not seqs:
            raise ValueError("no training sequences to batch")
        self.batch_size, self.buckets, self.pad_id = batch_size, tuple(buckets), pad_id
        self.pack_length = pack_length
        self.seed, self.shuffle = seed, shuffle
        self._seqs_for_epoch = seqs_for_epoch
        self._epoch_seqs = (0, list(seqs))
        self.position = Position()
        self._plan: tuple[int, list[tuple[int, np.ndarray]]] | None = None

    def seqs(self, epoch: int) -> list[Encoded]:
        """The sequences of `epoch`."""
        if self._seqs_for_epoch is not None and self._epoch_seqs[0] != epoch:
            self._epoch_seqs = (epoch, list(self._seqs_for_epoch(epoch)))
        return self._epoch_seqs[1]

    def _bucket_of(self, epoch: int) -> np.ndarray:
        return np.asarray([bucket_for(len(s.ids), self.buckets) for s in self.seqs(epoch)])

    def epoch_plan(self, epoch: int) -> list[tuple[int, Any]]:
        """[(bucket length, row indices)] for `epoch`: rows shuffled, grouped by bucket, batches shuffled.
        Packed: [(pack_length, [sequence indices of each row])], sequences in shuffled order, first fit."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.pack_length:
            return self._packed_plan(rng, epoch)
        n, bucket_of = len(self.seqs(epoch)), self._bucket_of(epoch)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        plan = []
        for b in self.buckets:
            rows = order[bucket_of[order] == b]
            plan += [(b, rows[i:i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]
        if self.shuffle:
            plan = [plan[i] for i in rng.permutation(len(plan))]
        return plan

    def _packed_plan(self, rng: np.random.Generator, epoch: int) -> list[tuple[int, list[list[int]]]]:
        lengths = [len(s.ids) for s in self.seqs(epoch)]
        order = rng.permutation(len(lengths)) if self.shuffle else np.arange(len(lengths))
        batches = first_fit([lengths[i] for i in order], self.pack_length, self.batch_size)
        return [(self.pack_length, [order[row].tolist() for row in rows]) for rows in batches]

    @property
    def batches_per_epoch(self) -> int:
        """Batches in every epoch (a partial batch per bucket is padded, never dropped)."""
        return len(self.epoch_plan(0))

    def real_share(self, epoch: int = 0) -> float:
        """Share of the positions the step computes in `epoch` that are real tokens (the rest is padding)."""
        computed = sum(length * self.batch_size for length, _ in self.epoch_plan(epoch))
        return sum(len(s.ids) for s in self.seqs(epoch)) / computed

    def bucket_counts(self) -> dict[int, int]:
        """Sequences per bucket length."""
        if self.pack_length:
            return {self.pack_length: len(self.seqs(self.position.epoch))}
        bucket_of = self._bucket_of(self.position.epoch)
        return {b: int((bucket_of == b).sum()) for b in self.buckets if (bucket_of == b).any()}

    def state(self) -> dict[str, int]:
        """JSON-able position, saved with the checkpoint."""
        return dataclasses.asdict(self.position)

    def restore(self, state: dict[str, int]) -> None:
        """Continues from a saved `state()`."""
        self.position = Position(int(state["epoch"]), int(state["index"]))

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        epoch, index = self.position.epoch, self.position.index
        if self._plan is None or self._plan[0] != epoch:
            self._plan = (epoch, self.epoch_plan(epoch))
        plan = self._plan[1]
        if index >= len(plan):
            self.position = Position(epoch + 1, 0)
            return next(self)
        length, rows = plan[index]
        self.position = Position(epoch, index + 1)
        seqs = self.seqs(epoch)
        if self.pack_length:
            return pack_batch([[seqs[r] for r in row] for row in rows], length, self.batch_size, self.pad_id)
        return pad_batch([seqs[r] for r in rows], length, self.batch_size, self.pad_id)
