"""Shared transformer pieces: LoRA-capable linear, norms, RoPE, masked (GQA, windowed) attention with a KV cache.

Dims: B batch, T new tokens, S cache slots, D model, N query heads, K kv heads, G = N/K, H head dim, R rank.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from icma_jax.models.attention import causal_attention, visible
from icma_jax.models.config import LMConfig
from icma_jax.models.lora import LoraConfig

_init = nn.initializers.normal(0.02)


@jax.custom_vjp
def lora_delta(h_NxI: jax.Array, a_IxR: jax.Array, b_RxO: jax.Array) -> jax.Array:
    """(h A) B, with a backward pass that never transposes an N-row operand.

    Autodiff's weight gradients contract over the N tokens (u^T dy, h^T g); XLA:CPU then materialises the
    transpose of the big N x O / N x I operand (about a quarter of a LoRA backward pass on CPU). Here the
    small N x R factors are transposed instead, behind an optimisation barrier so XLA cannot fold them back."""
    return jnp.dot(jnp.dot(h_NxI, a_IxR), b_RxO)


def _lora_delta_fwd(h_NxI, a_IxR, b_RxO):
    u_NxR = jnp.dot(h_NxI, a_IxR)
    return jnp.dot(u_NxR, b_RxO), (h_NxI, u_NxR, a_IxR, b_RxO)


def _lora_delta_bwd(res, dy_NxO):
    h_NxI, u_NxR, a_IxR, b_RxO = res
    db_RxO = jnp.dot(jax.lax.optimization_barrier(u_NxR.T), dy_NxO)
    g_NxR = jnp.dot(dy_NxO, b_RxO.T)
    da_IxR = jnp.dot(jax.lax.optimization_barrier(g_NxR.T), h_NxI).T
    return jnp.dot(g_NxR, a_IxR.T), da_IxR, db_RxO


lora_delta.defvjp(_lora_delta_fwd, _lora_delta_bwd)


def _mix32(x: jax.Array) -> jax.Array:
    """lowbias32 (C. Wellons' integer hash): a bijection of uint32 with near-ideal avalanche."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
    x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def keep_mask(seed_2: jax.Array, n: int, i: int, rate: float) -> jax.Array:
    """(n, i) bool, True with probability 1 - rate, from a counter-based hash of (seed, row, column).

    Dropout needs independent fair coins, not a cryptographic stream: hashing the element's global
    (row, column) index costs a few integer ops where threefry costs ~100, is partition-invariant under
    any sharding, and is cheap enough to recompute in the backward pass instead of storing the mask."""
    row_Nx1 = _mix32(jax.lax.broadcasted_iota(jnp.uint32, (n, 1), 0) ^ seed_2[0])
    col_1xI = jax.lax.broadcasted_iota(jnp.uint32, (1, i), 1) * jnp.uint32(0x9E3779B9)
    bits_NxI = _mix32((row_Nx1 + col_1xI) ^ seed_2[1])
    return bits_NxI >= jnp.uint32(min(round(rate * 2.0**32), 2**32 - 1))


def _drop(x_NxI: jax.Array, seed_2: jax.Array, rate: float) -> jax.Array:
    keep = keep_mask(seed_2, *x_NxI.shape, rate)
    return jnp.where(keep, x_NxI * jnp.asarray(1.0 / (1.0 - rate), x_NxI.dtype), jnp.zeros((), x_NxI.dtype))


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def lora_delta_dropout(x_NxI: jax.Array, a_IxR: jax.Array, b_RxO: jax.Array, seed_2: jax.Array,
                       rate: float) -> jax.Array:
    """(dropout(x) A) B with `keep_mask` dropout, recomputed in the backward pass: only x and the seed are kept."""
    return lora_delta(_drop(x_NxI, seed_2, rate), a_IxR, b_RxO)


def _lora_delta_dropout_fwd(x_NxI, a_IxR, b_RxO, seed_2, rate):
    y_NxO, (_, u_NxR, _, _) = _lora_delta_fwd(_drop(x_NxI, seed_2, rate), a_IxR, b_RxO)
    return y_NxO, (x_NxI, u_NxR, a_IxR, b_RxO, seed_2)  # x, not dropout(x): the mask is recomputed


def _lora_delta_dropout_bwd(rate, res, dy_NxO):
    x_NxI, u_NxR, a_IxR, b_RxO, seed_2 = res
    dh_NxI, da_IxR, db_RxO = _lora_delta_bwd((_drop(x_NxI, seed_2, rate), u_NxR, a_IxR, b_RxO), dy_NxO)
    return _drop(dh_NxI, seed_2, rate), da_IxR, db_RxO, None


lora_delta_dropout.defvjp(_lora_delta_dropout_fwd, _lora_delta_dropout_bwd)


def dtype_of(name: str) -> Any:
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]


class Linear(nn.Module):
    """y = x W (+ b) (+ (alpha/r) dropout(x) A B when `lora` is set; B starts at zero)."""

    features: int
    axes: tuple[str, str]
    use_bias: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    lora: LoraConfig | None = None
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BxTxI: jax.Array) -> jax.Array:
        d_in = x_BxTxI.shape[-1]
        w_IxO = self.param("kernel", nn.with_logical_partitioning(_init, self.axes), (d_in, self.features), self.param_dtype)
        x_BxTxI = x_BxTxI.astype(self.dtype)
        y_BxTxO = jnp.dot(x_BxTxI, w_IxO.astype(self.dtype))
        if self.use_bias:
            b_O = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, self.axes[1:]), (self.features,),
                             self.param_dtype)
            y_BxTxO = y_BxTxO + b_O.astype(self.dtype).reshape((1,) * (y_BxTxO.ndim - 1) + (-1,))
        if self.lora is None:
            return y_BxTxO
        r = self.lora.rank
        bound = 1.0 / math.sqrt(d_in)  # PEFT: kaiming_uniform(a=sqrt(5)) on A == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        a_init = nn.with_logical_partitioning(lambda k, s, d: jax.random.uniform(k, s, d, -bound, bound),
                                              (self.axes[0], "lora_rank"))
        a_IxR = self.variable("lora", "a", lambda: a_init(self.make_rng("params"), (d_in, r), jnp.float32)).value
        b_init = nn.with_logical_partitioning(nn.initializers.zeros, ("lora_rank", self.axes[1]))
        b_RxO = self.variable("lora", "b", lambda: b_init(None, (r, self.features), jnp.float32)).value
        x_NxI, a_IxR, b_RxO = x_BxTxI.reshape(-1, d_in), a_IxR.astype(self.dtype), b_RxO.astype(self.dtype)
        if self.deterministic or self.lora.dropout == 0.0:
            delta_NxO = lora_delta(x_NxI, a_IxR, b_RxO)
        else:
            seed_2 = jax.random.bits(self.make_rng("dropout"), (2,), jnp.uint32)
            delta_NxO = lora_delta_dropout(x_NxI, a_IxR, b_RxO, seed_2, self.lora.dropout)
        delta_BxTxO = delta_NxO.reshape(*x_BxTxI.shape[:-1], self.features)
        return y_BxTxO + (delta_BxTxO * self.lora.scale).astype(self.dtype)


class RMSNorm(nn.Module):
    """Llama RMSNorm, computed in fp32 then cast back (transformers semantics)."""

    eps: float
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        scale_D = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (x_BxTxD.shape[-1],),
                             self.param_dtype)
        x32 = x_BxTxD.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return scale_D.astype(self.dtype)[None, None, :] * x32.astype(self.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with weight and bias (OPT), statistics in fp32."""

    eps: float
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        d = x_BxTxD.shape[-1]
        scale_D = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (d,), self.param_dtype)
        bias_D = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)), (d,), self.param_dtype)
        x32 = x_BxTxD.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * scale_D.astype(jnp.float32)[None, None, :]
        y = y + bias_D.astype(jnp.float32)[None, None, :]
        return y.astype(self.dtype)


def rope_inv_freq(config: LMConfig) -> np.ndarray:
    """Inverse frequencies (H/2,) in fp32, with `linear` or Llama-3 scaling (transformers' formulas)."""
    h = config.head_dim
    inv = (1.0 / (np.float32(config.rope_theta) ** (np.arange(0, h, 2, dtype=np.float32) / np.float32(h)))).astype(np.float32)
    s = config.rope_scaling
    if s.rope_type == "linear":
        return (inv / np.float32(s.factor)).astype(np.float32)
    if s.rope_type == "llama3":
        low_wavelen = s.original_max_positions / s.low_freq_factor
        high_wavelen = s.original_max_positions / s.high_freq_factor
        wavelen = 2 * math.pi / inv
        inv_l = np.where(wavelen > low_wavelen, inv / s.factor, inv)
        smooth = (s.original_max_positions / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
        smoothed = (1 - smooth) * inv_l / s.factor + smooth * inv_l
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return np.where(medium, smoothed, inv_l).astype(np.float32)
    return inv


def apply_rope(x_BxTxNxH: jax.Array, pos_BxT: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotate-half RoPE (HF Llama layout: first half / second half of each head)."""
    freqs_BxTxF = pos_BxT.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)[None, None, :]
    emb_BxTxH = jnp.concatenate([freqs_BxTxF, freqs_BxTxF], axis=-1)
    cos = jnp.cos(emb_BxTxH)[:, :, None, :].astype(x_BxTxNxH.dtype)
    sin = jnp.sin(emb_BxTxH)[:, :, None, :].astype(x_BxTxNxH.dtype)
    x1, x2 = jnp.split(x_BxTxNxH, 2, axis=-1)
    return x_BxTxNxH * cos + jnp.concatenate([-x2, x1], axis=-1) * sin


def attention(q_BxTxNxH: jax.Array, k_BxSxKxH: jax.Array, v_BxSxKxH: jax.Array, kv_mask_BxS: jax.Array,
              q_slot_T: jax.Array, window: int | None) -> jax.Array:
    """Causal softmax attention over cache slots: slot s is visible to query slot q iff s <= q, s is a real
    token and (with a sliding window W) q - s < W. Scores and softmax in fp32."""
    b, t, n, h = q_BxTxNxH.shape
    kh = k_BxSxKxH.shape[2]
    q_BxTxKxGxH = q_BxTxNxH.reshape(b, t, kh, n // kh, h)
    s_BxKxGxTxS = jnp.einsum("btkgh,bskh->bkgts", q_BxTxKxGxH, k_BxSxKxH,
                             preferred_element_type=jnp.float32) / np.float32(math.sqrt(h))
    vis_BxTxS = visible(q_slot_T, kv_mask_BxS, window)
    s_BxKxGxTxS = jnp.where(vis_BxTxS[:, None, None, :, :], s_BxKxGxTxS, jnp.finfo(jnp.float32).min)
    p_BxKxGxTxS = jax.nn.softmax(s_BxKxGxTxS, axis=-1).astype(v_BxSxKxH.dtype)
    o_BxTxKxGxH = jnp.einsum("bkgts,bskh->btkgh", p_BxKxGxTxS, v_BxSxKxH)
    return o_BxTxKxGxH.reshape(b, t, n, h)


class Attention(nn.Module):
    """Multi-head / grouped-query self-attention with optional RoPE and an optional KV cache slice."""

    config: LMConfig
    out_name: str  # "o_proj" (Llama) or "out_proj" (OPT)
    lora: LoraConfig | None = None
    deterministic: bool = True
    fused: bool = False  # one `qkv_proj` kernel D x (N + 2K)H instead of q/k/v_proj (decoding layout)

    def _linear(self, name: str, features: int, axes: tuple[str, str]) -> Linear:
        c = self.config
        lora = self.lora if self.lora is not None and name in self.lora.targets else None
        return Linear(features, axes, c.attention_bias, dtype_of(c.dtype), dtype_of(c.param_dtype), lora,
                      self.deterministic, name=name)

    @nn.compact
    def __call__(self, x_BxTxD, pos_BxT, kv_mask_BxS, q_slot_T, cache_kv, layer):
        """`cache_kv`: None or the whole (k, v) cache, N x B x S x K x H; this layer reads slice `layer` and writes
        only its new T entries back in place (so a decode step moves O(T) cache memory, not O(S))."""
        c = self.config
        b, t, _ = x_BxTxD.shape
        n, kh, h = c.n_heads, c.n_kv_heads, c.head_dim
        if self.fused:
            qkv = self._linear("qkv_proj", (n + 2 * kh) * h, ("embed", "heads"))(x_BxTxD)
            q, k, v = jnp.split(qkv, [n * h, (n + kh) * h], axis=-1)
            q, k, v = q.reshape(b, t, n, h), k.reshape(b, t, kh, h), v.reshape(b, t, kh, h)
        else:
            q = self._linear("q_proj", n * h, ("embed", "heads"))(x_BxTxD).reshape(b, t, n, h)
            k = self._linear("k_proj", kh * h, ("embed", "kv_heads"))(x_BxTxD).reshape(b, t, kh, h)
            v = self._linear("v_proj", kh * h, ("embed", "kv_heads"))(x_BxTxD).reshape(b, t, kh, h)
        if c.family != "opt":
            inv_freq = rope_inv_freq(c)
            q, k = apply_rope(q, pos_BxT, inv_freq), apply_rope(k, pos_BxT, inv_freq)
        if cache_kv is not None:
            start = q_slot_T[0]
            k_full, v_full = (jax.lax.dynamic_update_slice(x, y.astype(x.dtype)[None], (layer, 0, start, 0, 0))
                              for x, y in zip(cache_kv, (k, v)))
            cache_kv = (k_full, v_full)
            k, v = k_full[layer], v_full[layer]
        if cache_kv is None:  # training/scoring: the hand-written backward pass (no stored probabilities)
            o = causal_attention(q, k, v, kv_mask_BxS, c.sliding_window).reshape(b, t, n * h)
        else:
            o = attention(q, k, v, kv_mask_BxS, q_slot_T, c.sliding_window).reshape(b, t, n * h)
        return self._linear(self.out_name, c.d_model, ("heads", "embed"))(o), cache_kv
