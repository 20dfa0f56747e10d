"""Hashed dropout: the keep mask is an integer hash of each element's global (row, column) index.

Dropout needs independent fair coins, not a cryptographic stream: hashing the index costs a few integer ops
where threefry costs ~100, gives the same mask under any sharding, and is cheap enough to recompute in the
backward pass instead of storing the mask. Dims (package legend): T tokens of the batch flattened (rows of
a linear's input), I features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _mix32(x: jax.Array) -> jax.Array:
    """lowbias32 (C. Wellons' integer hash): a bijection of uint32 with near-ideal avalanche."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
    x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def keep_mask(seed_2: jax.Array, rows: int, cols: int, rate: float) -> jax.Array:
    """(rows, cols) bool, True with probability 1 - rate, from a hash of (seed, row, column)."""
    row_Tx1 = _mix32(jax.lax.broadcasted_iota(jnp.uint32, (rows, 1), 0) ^ seed_2[0])
    col_1xI = jax.lax.broadcasted_iota(jnp.uint32, (1, cols), 1) * jnp.uint32(0x9E3779B9)
    bits_TxI = _mix32((row_Tx1 + col_1xI) ^ seed_2[1])
    return bits_TxI >= jnp.uint32(min(round(rate * 2.0**32), 2**32 - 1))


def hashed_dropout(x_TxI: jax.Array, seed_2: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout of `x_TxI` with `keep_mask(seed_2, T, I, rate)`."""
    keep_TxI = keep_mask(seed_2, *x_TxI.shape, rate)
    return jnp.where(keep_TxI, x_TxI * jnp.asarray(1.0 / (1.0 - rate), x_TxI.dtype), jnp.zeros((), x_TxI.dtype))
