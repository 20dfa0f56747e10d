"""Training-time attention core with a hand-written backward pass (flash-style recomputation, causal chunks).

Autodiff of softmax attention keeps the B x N x T x S probabilities of every layer for the backward pass and
transposes them for its weight-like products; on CPU both dominate the attention cost at ICMA's prompt
lengths (T = S = 512: 38 MB of probabilities per layer, zero-filled, written, read and transposed). Here the
backward pass recomputes the probabilities from q, k and the rows' max and sum, and every product is arranged
so that only the small T x H / S x H operands are ever transposed (behind optimisation barriers, so XLA
cannot fold them back into a transposed copy of the big operand).

Queries go in chunks of `CHUNK` positions, each against only the keys it can see (causality, and a sliding
window when the model has one): at T = 512 that is 10/16 of the full T x S products, at T = 2048 17/32.

`seg_BxT` is the attention mask generalised to packed rows: 0 = padding, and tokens see only earlier tokens
of the same segment id (a plain padded batch is the one-segment case, ids 0/1).

Dims: B batch, K kv heads, G query heads per kv head, M = T x G (query position major), S keys, H head dim.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

CHUNK = 128
_MIN = float(np.finfo(np.float32).min)
_barrier = jax.lax.optimization_barrier


def _t(x: jax.Array) -> jax.Array:
    """Swap the last two axes (a copy of a small operand, kept as one)."""
    return _barrier(jnp.swapaxes(x, -1, -2))


def _mm(a_BxKxIxJ: jax.Array, b_BxKxJxL: jax.Array) -> jax.Array:
    return jnp.einsum("bkij,bkjl->bkil", a_BxKxIxJ, b_BxKxJxL, preferred_element_type=jnp.float32)


def visible(q_slot_T: jax.Array, kv_mask_BxS: jax.Array, window: int | None, k_slot_S: jax.Array | None = None,
            q_seg_BxT: jax.Array | None = None) -> jax.Array:
    """B x T x S: key slot s is visible to query slot q iff s <= q, s is a real token (mask > 0), q - s < window
    and, given query segments, both hold the same segment id."""
    k_slot_S = jnp.arange(kv_mask_BxS.shape[1]) if k_slot_S is None else k_slot_S
    vis_TxS = k_slot_S[None, :] <= q_slot_T[:, None]
    if window is not None:
        vis_TxS = vis_TxS & (q_slot_T[:, None] - k_slot_S[None, :] < window)
    vis_BxTxS = vis_TxS[None, :, :] & (kv_mask_BxS[:, None, :] > 0)
    if q_seg_BxT is not None:
        vis_BxTxS = vis_BxTxS & (q_seg_BxT[:, :, None] == kv_mask_BxS[:, None, :])
    return vis_BxTxS


def _chunks(t: int, window: int | None) -> list[tuple[int, int, int]]:
    """(q0, q1, k0) per query chunk: queries q0..q1-1 can see keys k0..q1-1 only."""
    out = []
    for q0 in range(0, t, CHUNK):
        k0 = 0 if window is None else max(0, q0 - window + 1)
        out.append((q0, min(q0 + CHUNK, t), k0))
    return out


def _cat(chunks_BxKxCxX: list[jax.Array]) -> jax.Array:
    """The per-chunk rows back in one B x K x M x X array."""
    return chunks_BxKxCxX[0] if len(chunks_BxKxCxX) == 1 else jnp.concatenate(chunks_BxKxCxX, axis=2)


def _scores(q_BxKxCGxH, kT_BxKxHxS, seg_BxT, q0, q1, k0, window):
    """Masked, scaled scores of queries q0..q1-1 against keys k0..q1-1: B x K x (C G) x S'."""
    b, kh, cg, h = q_BxKxCGxH.shape
    s = q1 - k0
    s_BxKxCxGxS = (_mm(q_BxKxCGxH, kT_BxKxHxS[..., k0:q1]) * np.float32(1.0 / math.sqrt(h))).reshape(
        b, kh, q1 - q0, cg // (q1 - q0), s)
    vis = visible(jnp.arange(q0, q1), seg_BxT[:, k0:q1], window, jnp.arange(k0, q1), seg_BxT[:, q0:q1])
    return jnp.where(vis[:, None, :, None, :], s_BxKxCxGxS, _MIN).reshape(b, kh, cg, s), vis


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def attention_core(q_BxKxMxH: jax.Array, k_BxKxSxH: jax.Array, v_BxKxSxH: jax.Array, seg_BxT: jax.Array,
                   window: int | None) -> jax.Array:
    """softmax(where(visible, q k^T / sqrt(H), min)) v for self-attention (T = S), fp32 scores and softmax.

    Query rows that see no key (padding) return an average of the values they were compared with: they
    feed nothing a real token sees, so the value is never used."""
    return _forward(q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, seg_BxT, window)[0]


def _forward(q, k, v, seg, window):
    g = q.shape[2] // k.shape[2]
    kT = _t(k)
    outs, ms, zs = [], [], []
    for q0, q1, k0 in _chunks(k.shape[2], window):
        s, _ = _scores(q[:, :, q0 * g:q1 * g], kT, seg, q0, q1, k0, window)
        m = jnp.max(s, axis=-1, keepdims=True)
        e = jnp.exp(s - m)
        z = jnp.sum(e, axis=-1, keepdims=True)
        outs.append(_mm((e / z).astype(v.dtype), v[:, :, k0:q1]).astype(v.dtype))
        ms.append(m)
        zs.append(z)
    return _cat(outs), (_cat(ms), _cat(zs))


def _fwd(q, k, v, seg, window):
    o, (m, z) = _forward(q, k, v, seg, window)
    return o, (q, k, v, seg, o, m, z)


def _bwd(window, res, do_BxKxMxH):
    q, k, v, seg, o, m_row, z_row = res
    h, t = q.shape[3], k.shape[2]
    g = q.shape[2] // t
    kT, vT, qT, doT = _t(k), _t(v), _t(q), _t(do_BxKxMxH)
    row = jnp.sum(do_BxKxMxH.astype(jnp.float32) * o.astype(jnp.float32), axis=-1, keepdims=True)
    dqs = []
    dkT = jnp.zeros(kT.shape, jnp.float32)
    dvT = jnp.zeros(vT.shape, jnp.float32)
    for q0, q1, k0 in _chunks(t, window):
        rows = slice(q0 * g, q1 * g)
        s, vis = _scores(q[:, :, rows], kT, seg, q0, q1, k0, window)
        p = jnp.exp(s - m_row[:, :, rows]) / z_row[:, :, rows]  # recomputed as in the forward
        dp = _mm(do_BxKxMxH[:, :, rows], vT[..., k0:q1])
        ds = (p * (dp - row[:, :, rows])).reshape(*p.shape[:2], q1 - q0, g, q1 - k0)
        ds = (jnp.where(vis[:, None, :, None, :], ds, 0.0) * np.float32(1.0 / math.sqrt(h))).reshape(p.shape)
        ds = ds.astype(q.dtype)
        dqs.append(_mm(ds, k[:, :, k0:q1]))
        dkT = dkT.at[..., k0:q1].add(_mm(qT[..., rows], ds))  # (q^T ds): the M x S operand is never transposed
        dvT = dvT.at[..., k0:q1].add(_mm(doT[..., rows], p.astype(v.dtype)))
    return _cat(dqs).astype(q.dtype), _t(dkT).astype(k.dtype), _t(dvT).astype(v.dtype), None


attention_core.defvjp(_fwd, _bwd)


def causal_attention(q_BxTxNxH: jax.Array, k_BxTxKxH: jax.Array, v_BxTxKxH: jax.Array, seg_BxT: jax.Array,
                     window: int | None) -> jax.Array:
    """Self-attention over the T new tokens without a cache, through `attention_core`; for a 0/1 mask the
    real rows equal what `layers.attention` computes for kv_mask = mask and q_slot = arange(T)."""
    b, t, n, h = q_BxTxNxH.shape
    kh = k_BxTxKxH.shape[2]
    g = n // kh
    q_BxKxMxH = q_BxTxNxH.reshape(b, t, kh, g, h).transpose(0, 2, 1, 3, 4).reshape(b, kh, t * g, h)
    k_BxKxSxH, v_BxKxSxH = (x.transpose(0, 2, 1, 3) for x in (k_BxTxKxH, v_BxTxKxH))
    o_BxKxMxH = attention_core(q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, seg_BxT, window)
    return o_BxKxMxH.reshape(b, kh, t, g, h).transpose(0, 2, 1, 3, 4).reshape(b, t, n, h)
