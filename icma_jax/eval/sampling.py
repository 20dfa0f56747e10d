"""Logits processors with transformers' semantics (repetition penalty, temperature, top-k, top-p) and token choice.

Dims: B rows, V vocab.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def repetition_penalty(logits_BxV: jax.Array, seen_BxV: jax.Array, penalty: float) -> jax.Array:
    """HF `RepetitionPenaltyLogitsProcessor`: seen tokens' logits divided by `penalty` if > 0, multiplied if < 0."""
    if penalty == 1.0:
        return logits_BxV
    penalised = jnp.where(logits_BxV < 0, logits_BxV * penalty, logits_BxV / penalty)
    return jnp.where(seen_BxV, penalised, logits_BxV)


def top_k_filter(logits_BxV: jax.Array, k: int) -> jax.Array:
    """HF `TopKLogitsWarper`: drop logits below the k-th largest (ties with it are kept)."""
    if k <= 0 or k >= logits_BxV.shape[-1]:
        return logits_BxV
    kth_Bx1 = jax.lax.top_k(logits_BxV, k)[0][:, -1:]
    return jnp.where(logits_BxV < kth_Bx1, NEG_INF, logits_BxV)


def top_p_filter(logits_BxV: jax.Array, p: float) -> jax.Array:
    """HF `TopPLogitsWarper`: sort ascending, drop tokens whose cumulative probability is <= 1 - p (keep >= 1)."""
    if p >= 1.0:
        return logits_BxV
    order_BxV = jnp.argsort(logits_BxV, axis=-1)
    sorted_BxV = jnp.take_along_axis(logits_BxV, order_BxV, axis=-1)
    cum_BxV = jnp.cumsum(jax.nn.softmax(sorted_BxV, axis=-1), axis=-1)
    drop_sorted_BxV = (cum_BxV <= 1.0 - p).at[:, -1].set(False)
    rows_Bx1 = jnp.arange(logits_BxV.shape[0])[:, None]
    drop_BxV = jnp.zeros_like(drop_sorted_BxV).at[rows_Bx1, order_BxV].set(drop_sorted_BxV)
    return jnp.where(drop_BxV, NEG_INF, logits_BxV)


def process_logits(logits_BxV: jax.Array, seen_BxV: jax.Array, *, sample: bool, temperature: float, top_k: int,
                   top_p: float, penalty: float) -> jax.Array:
    """transformers' order: repetition penalty, then (sampling only) temperature, top-k, top-p."""
    logits_BxV = repetition_penalty(logits_BxV.astype(jnp.float32), seen_BxV, penalty)
    if not sample:
        return logits_BxV
    if temperature != 1.0:
        logits_BxV = logits_BxV / temperature
    return top_p_filter(top_k_filter(logits_BxV, top_k), top_p)


def choose(logits_BxV: jax.Array, key: jax.Array, sample: bool) -> jax.Array:
    """argmax (first maximum, like torch) or a categorical sample."""
    if sample:
        return jax.random.categorical(key, logits_BxV, axis=-1).astype(jnp.int32)
    return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
