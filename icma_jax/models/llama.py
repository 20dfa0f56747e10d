"""Llama / Mistral decoder block: RMSNorm, RoPE GQA attention (sliding window for Mistral), SwiGLU MLP.

Dims (package legend): B batch rows, L tokens, D model width, F feed-forward width.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from icma_jax.models.attention import Attention
from icma_jax.models.config import LMConfig, LoraConfig, dtype_of
from icma_jax.models.linear import Linear
from icma_jax.models.norms import RMSNorm


@jax.custom_vjp
def swiglu(g_BxLxF: jax.Array, u_BxLxF: jax.Array) -> jax.Array:
    """silu(g) * u whose backward pass keeps only g and u (autodiff also keeps sigmoid(g), silu(g), ...)."""
    return nn.silu(g_BxLxF) * u_BxLxF


def _swiglu_fwd(g, u):
    return nn.silu(g) * u, (g, u)


def _swiglu_bwd(res, dy):
    g, u = res
    s = jax.nn.sigmoid(g)
    return dy * u * s * (1 + g * (1 - s)), dy * g * s


swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


class LlamaBlock(nn.Module):
    """One Llama/Mistral layer (HF names: input_layernorm, self_attn, post_attention_layernorm, mlp)."""

    config: LMConfig
    lora: LoraConfig | None = None
    deterministic: bool = True
    fused: bool = False

    @nn.compact
    def __call__(self, carry, pos_BxL, kv_seg_BxS, q_slot_L, layer):
        h_BxLxD, cache_kv = carry
        c = self.config
        dt, pdt = dtype_of(c.dtype), dtype_of(c.param_dtype)
        x = RMSNorm(c.norm_eps, dt, pdt, name="input_layernorm")(h_BxLxD)
        a, cache_kv = Attention(c, "o_proj", self.lora, self.deterministic, self.fused, name="self_attn")(
            x, pos_BxL, kv_seg_BxS, q_slot_L, cache_kv, layer)
        h_BxLxD = h_BxLxD + a
        x = RMSNorm(c.norm_eps, dt, pdt, name="post_attention_layernorm")(h_BxLxD)
        mlp = _MLP(c, self.lora, self.deterministic, self.fused, name="mlp")
        return (h_BxLxD + mlp(x), cache_kv), None


class _MLP(nn.Module):
    """down(silu(gate(x)) * up(x)); `fused`: gate and up as one `gate_up_proj` kernel (D x 2F)."""

    config: LMConfig
    lora: LoraConfig | None = None
    deterministic: bool = True
    fused: bool = False

    @nn.compact
    def __call__(self, x_BxLxD):
        c = self.config

        def fc(name, features, axes):
            lora = self.lora if self.lora is not None and name in self.lora.targets else None
            return Linear(features, axes, c.mlp_bias, dtype_of(c.dtype), dtype_of(c.param_dtype), lora,
                          self.deterministic, name=name)

        if self.fused:
            g_BxLxF, u_BxLxF = jnp.split(fc("gate_up_proj", 2 * c.d_ff, ("embed", "mlp"))(x_BxLxD), 2, axis=-1)
        else:
            g_BxLxF = fc("gate_proj", c.d_ff, ("embed", "mlp"))(x_BxLxD)
            u_BxLxF = fc("up_proj", c.d_ff, ("embed", "mlp"))(x_BxLxD)
        return fc("down_proj", c.d_model, ("mlp", "embed"))(swiglu(g_BxLxF, u_BxLxF))
