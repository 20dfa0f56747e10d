"""OPT / Galactica decoder block: LayerNorm (pre- or post-), biased MHA, fc1 -> relu|gelu -> fc2.

Dims: B batch, T new tokens, S cache slots, D model, F feed-forward.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from icma_jax.models.config import LMConfig
from icma_jax.models.layers import Attention, LayerNorm, Linear, dtype_of
from icma_jax.models.lora import LoraConfig


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
    def __call__(self, carry, pos_BxT, kv_mask_BxS, q_slot_T, layer):
        h_BxTxD, cache_kv = carry
        c = self.config
        dt, pdt = dtype_of(c.dtype), dtype_of(c.param_dtype)
        attn_norm = LayerNorm(c.norm_eps, dt, pdt, name="self_attn_layer_norm")
        mlp_norm = LayerNorm(c.norm_eps, dt, pdt, name="final_layer_norm")
        x = attn_norm(h_BxTxD) if c.pre_norm else h_BxTxD
        a, cache_kv = Attention(c, "out_proj", self.lora, self.deterministic, self.fused, name="self_attn")(
            x, pos_BxT, kv_mask_BxS, q_slot_T, cache_kv, layer)
        h_BxTxD = h_BxTxD + a
        h_BxTxD = h_BxTxD if c.pre_norm else attn_norm(h_BxTxD)
        x = mlp_norm(h_BxTxD) if c.pre_norm else h_BxTxD
        f_BxTxF = self._fc("fc1", c.d_ff, ("embed", "mlp"))(x)
        f_BxTxF = nn.relu(f_BxTxF) if c.activation == "relu" else jax.nn.gelu(f_BxTxF, approximate=False)
        h_BxTxD = h_BxTxD + self._fc("fc2", c.d_model, ("mlp", "embed"))(f_BxTxF)
        h_BxTxD = h_BxTxD if c.pre_norm else mlp_norm(h_BxTxD)
        return (h_BxTxD, cache_kv), None
