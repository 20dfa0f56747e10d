"""`Linear`: y = x W (+ b), plus a LoRA adapter (alpha/r) dropout(x) A B whose backward passes are hand-written.

Autodiff's weight gradients contract over the T tokens (u^T dy, h^T g); XLA:CPU then materialises the
transpose of the big T x O / T x I operand (about a quarter of a LoRA backward pass on CPU). Here the small
T x R factors are transposed instead, behind an optimisation barrier so XLA cannot fold them back. The
adapter's dropout is `dropout.hashed_dropout`, recomputed in the backward pass instead of stored.

Dims (package legend): B batch rows, L tokens, T = B L tokens flattened, I / O input / output features,
R LoRA rank.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from icma_jax.models.config import LoraConfig
from icma_jax.models.dropout import hashed_dropout

_init = nn.initializers.normal(0.02)


@jax.custom_vjp
def lora_delta(h_TxI: jax.Array, a_IxR: jax.Array, b_RxO: jax.Array) -> jax.Array:
    """(h A) B, with a backward pass that never transposes a T-row operand."""
    return jnp.dot(jnp.dot(h_TxI, a_IxR), b_RxO)


def _lora_delta_fwd(h_TxI, a_IxR, b_RxO):
    u_TxR = jnp.dot(h_TxI, a_IxR)
    return jnp.dot(u_TxR, b_RxO), (h_TxI, u_TxR, a_IxR, b_RxO)


def _lora_delta_bwd(res, dy_TxO):
    h_TxI, u_TxR, a_IxR, b_RxO = res
    db_RxO = jnp.dot(jax.lax.optimization_barrier(u_TxR.T), dy_TxO)
    g_TxR = jnp.dot(dy_TxO, b_RxO.T)
    da_IxR = jnp.dot(jax.lax.optimization_barrier(g_TxR.T), h_TxI).T
    return jnp.dot(g_TxR, a_IxR.T), da_IxR, db_RxO


lora_delta.defvjp(_lora_delta_fwd, _lora_delta_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def lora_delta_dropout(x_TxI: jax.Array, a_IxR: jax.Array, b_RxO: jax.Array, seed_2: jax.Array,
                       rate: float) -> jax.Array:
    """(dropout(x) A) B with hashed dropout, recomputed in the backward pass: only x and the seed are kept."""
    return lora_delta(hashed_dropout(x_TxI, seed_2, rate), a_IxR, b_RxO)


def _lora_delta_dropout_fwd(x_TxI, a_IxR, b_RxO, seed_2, rate):
    y_TxO, (_, u_TxR, _, _) = _lora_delta_fwd(hashed_dropout(x_TxI, seed_2, rate), a_IxR, b_RxO)
    return y_TxO, (x_TxI, u_TxR, a_IxR, b_RxO, seed_2)  # x, not dropout(x): the mask is recomputed


def _lora_delta_dropout_bwd(rate, res, dy_TxO):
    x_TxI, u_TxR, a_IxR, b_RxO, seed_2 = res
    dh_TxI, da_IxR, db_RxO = _lora_delta_bwd((hashed_dropout(x_TxI, seed_2, rate), u_TxR, a_IxR, b_RxO), dy_TxO)
    return hashed_dropout(dh_TxI, seed_2, rate), da_IxR, db_RxO, None


lora_delta_dropout.defvjp(_lora_delta_dropout_fwd, _lora_delta_dropout_bwd)


class Linear(nn.Module):
    """y = x W (+ b) (+ (alpha/r) dropout(x) A B when `lora` is set; B starts at zero). Kernels are in x out."""

    features: int
    axes: tuple[str, str]
    use_bias: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    lora: LoraConfig | None = None
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BxLxI: jax.Array) -> jax.Array:
        d_in = x_BxLxI.shape[-1]
        w_IxO = self.param("kernel", nn.with_logical_partitioning(_init, self.axes), (d_in, self.features),
                           self.param_dtype)
        x_BxLxI = x_BxLxI.astype(self.dtype)
        y_BxLxO = jnp.dot(x_BxLxI, w_IxO.astype(self.dtype))
        if self.use_bias:
            zeros = nn.with_logical_partitioning(nn.initializers.zeros, self.axes[1:])
            b_O = self.param("bias", zeros, (self.features,), self.param_dtype)
            y_BxLxO = y_BxLxO + b_O.astype(self.dtype).reshape((1,) * (y_BxLxO.ndim - 1) + (-1,))
        if self.lora is None:
            return y_BxLxO
        r = self.lora.rank
        bound = 1.0 / math.sqrt(d_in)  # PEFT: kaiming_uniform(a=sqrt(5)) on A == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        a_init = nn.with_logical_partitioning(lambda k, s, d: jax.random.uniform(k, s, d, -bound, bound),
                                              (self.axes[0], "lora_rank"))
        a_IxR = self.variable("lora", "a", lambda: a_init(self.make_rng("params"), (d_in, r), jnp.float32)).value
        b_init = nn.with_logical_partitioning(nn.initializers.zeros, ("lora_rank", self.axes[1]))
        b_RxO = self.variable("lora", "b", lambda: b_init(None, (r, self.features), jnp.float32)).value
        x_TxI, a_IxR, b_RxO = x_BxLxI.reshape(-1, d_in), a_IxR.astype(self.dtype), b_RxO.astype(self.dtype)
        if self.deterministic or self.lora.dropout == 0.0:
            delta_TxO = lora_delta(x_TxI, a_IxR, b_RxO)
        else:
            seed_2 = jax.random.bits(self.make_rng("dropout"), (2,), jnp.uint32)
            delta_TxO = lora_delta_dropout(x_TxI, a_IxR, b_RxO, seed_2, self.lora.dropout)
        delta_BxLxO = delta_TxO.reshape(*x_BxLxI.shape[:-1], self.features)
        return y_BxLxO + (delta_BxLxO * self.lora.scale).astype(self.dtype)
