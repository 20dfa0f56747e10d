"""OPT / Galactica decoder block: LayerNorm (pre- or post-), biased MHA, fc1 -> relu|gelu -> fc2.

Dims (package legend): B batch rows, L tokens, D model width, F feed-forward width.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from icma_jax.models.attention import Attention
from icma_jax.models.config import LMConfig, LoraConfig, dtype_of
from icma_jax.models.linear import Linear
from icma_jax.models.norms import LayerNorm


class OPTBlock(nn.Module):
    """One OPT decoder layer (HF names: self_attn, self_attn_layer_norm, fc1, fc2, final_layer_norm)."""

    config: LMConfig
    lora: LoraConfig | None = None
    deterministic: bool = True
    fused: bool = False

    def _fc(self, name: str, features: int, axes: tuple[str, str]) -> Linear:
        c = self.config
        lora = self.lora if self.lora is not None and name in self.lora.targets else None
        return Linear(features, axes, c.mlp_bias, dtype_of(c.dtype), dtype_of(c.param_dtype), lora, self.deterministic,
                      name=name)

    @nn.compact
    def __call__(self, carry, pos_BxL, kv_seg_BxS, q_slot_L, layer):
        h_BxLxD, cache_kv = carry
        c = self.config
        dt, pdt = dtype_of(c.dtype), dtype_of(c.param_dtype)
        attn_norm = LayerNorm(c.norm_eps, dt, pdt, name="self_attn_layer_norm")
        mlp_norm = LayerNorm(c.norm_eps, dt, pdt, name="final_layer_norm")
        x = attn_norm(h_BxLxD) if c.pre_norm else h_BxLxD
        a, cache_kv = Attention(c, "out_proj", self.lora, self.deterministic, self.fused, name="self_attn")(
            x, pos_BxL, kv_seg_BxS, q_slot_L, cache_kv, layer)
        h_BxLxD = h_BxLxD + a
        h_BxLxD = h_BxLxD if c.pre_norm else attn_norm(h_BxLxD)
        x = mlp_norm(h_BxLxD) if c.pre_norm else h_BxLxD
        f_BxLxF = self._fc("fc1", c.d_ff, ("embed", "mlp"))(x)
        f_BxLxF = nn.relu(f_BxLxF) if c.activation == "relu" else jax.nn.gelu(f_BxLxF, approximate=False)
        h_BxLxD = h_BxLxD + self._fc("fc2", c.d_model, ("mlp", "embed"))(f_BxLxF)
        h_BxLxD = h_BxLxD if c.pre_norm else mlp_norm(h_BxLxD)
        return (h_BxLxD, cache_kv), None
