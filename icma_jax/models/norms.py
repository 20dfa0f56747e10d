"""RMSNorm (Llama/Mistral) and LayerNorm (OPT), statistics in fp32 (transformers semantics).

Dims (package legend): B batch rows, L tokens, D model width.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class RMSNorm(nn.Module):
    """Llama RMSNorm, computed in fp32 then cast back."""

    eps: float
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        ones = nn.with_logical_partitioning(nn.initializers.ones, ("norm",))
        scale_D = self.param("scale", ones, (x_BxLxD.shape[-1],), self.param_dtype)
        x32_BxLxD = x_BxLxD.astype(jnp.float32)
        x32_BxLxD = x32_BxLxD * jax.lax.rsqrt(jnp.mean(x32_BxLxD * x32_BxLxD, axis=-1, keepdims=True) + self.eps)
        return scale_D.astype(self.dtype)[None, None, :] * x32_BxLxD.astype(self.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with weight and bias (OPT)."""

    eps: float
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        d = x_BxLxD.shape[-1]
        ones = nn.with_logical_partitioning(nn.initializers.ones, ("norm",))
        zeros = nn.with_logical_partitioning(nn.initializers.zeros, ("norm",))
        scale_D = self.param("scale", ones, (d,), self.param_dtype)
        bias_D = self.param("bias", zeros, (d,), self.param_dtype)
        x32_BxLxD = x_BxLxD.astype(jnp.float32)
        mean_BxLx1 = jnp.mean(x32_BxLxD, axis=-1, keepdims=True)
        var_BxLx1 = jnp.mean(jnp.square(x32_BxLxD - mean_BxLx1), axis=-1, keepdims=True)
        y_BxLxD = ((x32_BxLxD - mean_BxLx1) * jax.lax.rsqrt(var_BxLx1 + self.eps)
                   * scale_D.astype(jnp.float32)[None, None, :])
        y_BxLxD = y_BxLxD + bias_D.astype(jnp.float32)[None, None, :]
        return y_BxLxD.astype(self.dtype)
