"""Training-time attention core with a hand-written backward pass (flash-style recomputation, no tiling).

Autodiff of softmax attention keeps the B x N x T x S probabilities of every layer for the backward pass and
transposes them for its weight-like products; on CPU both dominate the attention cost at ICMA's prompt
lengths (T = S = 512: 38 MB of probabilities per layer, zero-filled, written, read and transposed). Here the
backward pass recomputes the probabilities from q, k and the rows' max and sum, and every product is arranged
so that only the small T x H / S x H operands are ever transposed (behind optimisation barriers, so XLA
cannot fold them back into a transposed copy of the big operand).

Dims: B batch, K kv heads, M = G x T (query heads of a group times query positions), S keys, H head dim.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

_MIN = float(np.finfo(np.float32).min)
_barrier = jax.lax.optimization_barrier


def _t(x: jax.Array) -> jax.Array:
    """Swap the last two axes (a copy of a small operand, kept as one)."""
    return _barrier(jnp.swapaxes(x, -1, -2))


def _mm(a_BxKxIxJ: jax.Array, b_BxKxJxL: jax.Array) -> jax.Array:
    return jnp.einsum("bkij,bkjl->bkil", a_BxKxIxJ, b_BxKxJxL, preferred_element_type=jnp.float32)


def visible(q_slot_T: jax.Array, kv_mask_BxS: jax.Array, window: int | None) -> jax.Array:
    """B x T x S: cache slot s is visible to query slot q iff s <= q, s is a real token and q - s < window."""
    k_slot_S = jnp.arange(kv_mask_BxS.shape[1])
    vis_TxS = k_slot_S[None, :] <= q_slot_T[:, None]
    if window is not None:
        vis_TxS = vis_TxS & (q_slot_T[:, None] - k_slot_S[None, :] < window)
    return vis_TxS[None, :, :] & kv_mask_BxS[:, None, :].astype(bool)


def _visible(mask_BxS: jax.Array, t: int, window: int | None) -> jax.Array:
    """B x 1 x 1 x T x S for self-attention over T = S new tokens."""
    return visible(jnp.arange(t), mask_BxS, window)[:, None, None]


def _scores(q_BxKxMxH, k_BxKxSxH, mask_BxS, window):
    b, kh, m, h = q_BxKxMxH.shape
    s = k_BxKxSxH.shape[2]
    t = s  # self-attention: the T queries are the S keys
    s_BxKxGxTxS = (_mm(q_BxKxMxH, _t(k_BxKxSxH)) * np.float32(1.0 / math.sqrt(h))).reshape(b, kh, m // t, t, s)
    return jnp.where(_visible(mask_BxS, t, window), s_BxKxGxTxS, _MIN).reshape(b, kh, m, s)


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def attention_core(q_BxKxMxH: jax.Array, k_BxKxSxH: jax.Array, v_BxKxSxH: jax.Array, mask_BxS: jax.Array,
                   window: int | None) -> jax.Array:
    """softmax(where(visible, q k^T / sqrt(H), min)) v, scores and softmax in fp32 (`layers.attention`'s math)."""
    return _forward(q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, mask_BxS, window)[0]


def _forward(q, k, v, mask, window):
    s = _scores(q, k, mask, window)
    m = jnp.max(s, axis=-1, keepdims=True)
    e = jnp.exp(s - m)
    z = jnp.sum(e, axis=-1, keepdims=True)
    o = _mm((e / z).astype(v.dtype), v).astype(v.dtype)
    return o, (m, z)


def _fwd(q, k, v, mask, window):
    o, (m, z) = _forward(q, k, v, mask, window)
    return o, (q, k, v, mask, o, m, z)


def _bwd(window, res, do_BxKxMxH):
    q, k, v, mask, o, m_row, z_row = res
    b, kh, m, h = q.shape
    t = k.shape[2]
    p = jnp.exp(_scores(q, k, mask, window) - m_row) / z_row  # B x K x M x S, recomputed as in the forward
    dp = _mm(do_BxKxMxH, _t(v))
    row = jnp.sum(do_BxKxMxH.astype(jnp.float32) * o.astype(jnp.float32), axis=-1, keepdims=True)
    ds = (p * (dp - row)).reshape(b, kh, m // t, t, t)
    ds = (jnp.where(_visible(mask, t, window), ds, 0.0) * np.float32(1.0 / math.sqrt(h))).reshape(b, kh, m, t)
    ds = ds.astype(q.dtype)
    dq = _mm(ds, k)
    dk = _t(_mm(_t(q), ds))  # (q^T ds)^T: the M x S operand is never transposed
    dv = _t(_mm(_t(do_BxKxMxH), p.astype(v.dtype)))
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


attention_core.defvjp(_fwd, _bwd)


def causal_attention(q_BxTxNxH: jax.Array, k_BxTxKxH: jax.Array, v_BxTxKxH: jax.Array, mask_BxT: jax.Array,
                     window: int | None) -> jax.Array:
    """Self-attention over the T new tokens without a cache: what `layers.attention` computes for
    kv_mask = mask and q_slot = arange(T), through `attention_core`."""
    b, t, n, h = q_BxTxNxH.shape
    kh = k_BxTxKxH.shape[2]
    g = n // kh
    q_BxKxMxH = q_BxTxNxH.reshape(b, t, kh, g, h).transpose(0, 2, 3, 1, 4).reshape(b, kh, g * t, h)
    k_BxKxSxH, v_BxKxSxH = (x.transpose(0, 2, 1, 3) for x in (k_BxTxKxH, v_BxTxKxH))
    o_BxKxMxH = attention_core(q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, mask_BxT, window)
    return o_BxKxMxH.reshape(b, kh, g, t, h).transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)
