"""Rotary position embeddings (HF Llama layout) with `linear` and Llama-3 frequency scaling.

Dims (package legend): B batch rows, L tokens, A heads (query or kv), H head dim.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from icma_jax.models.config import LMConfig


def rope_inv_freq(config: LMConfig) -> np.ndarray:
    """Inverse frequencies (H/2,) in fp32, with `linear` or Llama-3 scaling (transformers' formulas)."""
    h = config.head_dim
    exponent = np.arange(0, h, 2, dtype=np.float32) / np.float32(h)
    inv = (1.0 / (np.float32(config.rope_theta) ** exponent)).astype(np.float32)
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


def apply_rope(x_BxLxAxH: jax.Array, pos_BxL: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotate-half RoPE: the first and second half of each head form the rotated pairs."""
    inv_freq_H = jnp.asarray(np.concatenate([inv_freq, inv_freq]))
    emb_BxLxH = pos_BxL.astype(jnp.float32)[..., None] * inv_freq_H[None, None, :]
    cos_BxLx1xH = jnp.cos(emb_BxLxH)[:, :, None, :].astype(x_BxLxAxH.dtype)
    sin_BxLx1xH = jnp.sin(emb_BxLxH)[:, :, None, :].astype(x_BxLxAxH.dtype)
    x1, x2 = jnp.split(x_BxLxAxH, 2, axis=-1)
    return x_BxLxAxH * cos_BxLx1xH + jnp.concatenate([-x2, x1], axis=-1) * sin_BxLx1xH
