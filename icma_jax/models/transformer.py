"""`CausalLM`: embeddings, a scanned stack of OPT or Llama/Mistral blocks, final norm, (tied) head; KV cache.

Dims (package legend): B batch rows, L tokens fed in, S cache slots, W head positions, D model width,
V vocabulary, Z layers, K kv heads, H head dim.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from icma_jax.models.config import LMConfig, LoraConfig, dtype_of
from icma_jax.models.linear import Linear
from icma_jax.models.llama import LlamaBlock
from icma_jax.models.norms import LayerNorm, RMSNorm
from icma_jax.models.opt import OPTBlock

OPT_POSITION_OFFSET = 2  # OPT's learned position table is shifted by 2 (fairseq legacy)


class KVCache(NamedTuple):
    """Preallocated keys/values for every layer plus which slots hold real tokens; `index` = next free slot."""

    k_ZxBxSxKxH: jax.Array
    v_ZxBxSxKxH: jax.Array
    mask_BxS: jax.Array
    index: jax.Array


def init_cache(config: LMConfig, batch: int, slots: int) -> KVCache:
    """An empty cache of `slots` positions in the compute dtype."""
    shape = (config.n_layers, batch, slots, config.n_kv_heads, config.head_dim)
    dt = dtype_of(config.dtype)
    return KVCache(jnp.zeros(shape, dt), jnp.zeros(shape, dt), jnp.zeros((batch, slots), jnp.int32),
                   jnp.zeros((), jnp.int32))


class CausalLM(nn.Module):
    """logits = LM(tokens_BxL, segment_ids_BxL); positions come from the segment ids so left padding is exact.

    Without a cache the segment ids may describe packed rows (0 = padding, each sequence its own id; a token
    sees earlier tokens of its own segment, positions restart at every segment); with `cache` they are the
    0/1 mask of the L new tokens, which are written at slot `cache.index`, and the call returns
    (logits, cache'). The head runs where logits are wanted: on every position (B x L x V), or on the W
    positions `head_pos_BxW` of each row (B x W x V: training's loss window, generation's last position)."""

    config: LMConfig
    lora: LoraConfig | None = None
    remat: bool = False
    scan_layers: bool = True  # False: a Python loop over `layers_{i}` params (decoding; see `unstack_layers`)
    fused: bool = False  # q/k/v and gate/up kernels concatenated (`qkv_proj`, `gate_up_proj`): decoding layout

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array, segment_ids_BxL: jax.Array, deterministic: bool = True,
                 cache: KVCache | None = None, head_pos_BxW: jax.Array | None = None):
        c = self.config
        dt, pdt = dtype_of(c.dtype), dtype_of(c.param_dtype)
        b, length = tokens_BxL.shape
        seg_BxL = segment_ids_BxL.astype(jnp.int32)
        if cache is None:
            kv_seg_BxS, q_slot_L, pos_BxL = seg_BxL, jnp.arange(length), segment_positions(seg_BxL)
        else:
            count_B = jnp.sum(cache.mask_BxS, axis=-1)
            kv_seg_BxS = jax.lax.dynamic_update_slice(cache.mask_BxS, seg_BxL, (0, cache.index))
            q_slot_L = cache.index + jnp.arange(length)
            pos_BxL = jnp.maximum(count_B[:, None] + jnp.cumsum(seg_BxL, axis=1) - 1, 0)

        embed = nn.Embed(c.vocab_size, c.d_model, dtype=dt, param_dtype=pdt, name="embed_tokens",
                         embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed")))
        h_BxLxD = embed(tokens_BxL)
        if c.family == "opt":
            pos_embed = nn.Embed(c.max_positions + OPT_POSITION_OFFSET, c.d_model, dtype=dt, param_dtype=pdt,
                                 name="embed_positions", embedding_init=nn.with_logical_partitioning(
                                     nn.initializers.normal(0.02), (None, "embed")))
            h_BxLxD = h_BxLxD + pos_embed(pos_BxL + OPT_POSITION_OFFSET)

        block = OPTBlock if c.family == "opt" else LlamaBlock
        if self.remat:
            block = nn.remat(block, prevent_cse=False)
        cache_kv = None if cache is None else (cache.k_ZxBxSxKxH, cache.v_ZxBxSxKxH)
        carry = (h_BxLxD, cache_kv)
        if self.scan_layers:
            layers = nn.scan(block, variable_axes={"params": 0, "lora": 0},
                             split_rngs={"params": True, "dropout": True},
                             in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, 0), length=c.n_layers,
                             metadata_params={nn.PARTITION_NAME: "layers"})
            carry, _ = layers(c, self.lora, deterministic, self.fused, name="layers")(
                carry, pos_BxL, kv_seg_BxS, q_slot_L, jnp.arange(c.n_layers))
        else:  # weights are loop-invariant inputs, so XLA hoists their per-layer slicing out of a decode loop
            for i in range(c.n_layers):
                carry, _ = block(c, self.lora, deterministic, self.fused, name=f"layers_{i}")(
                    carry, pos_BxL, kv_seg_BxS, q_slot_L, i)
        h_BxLxD, new_kv = carry
        if c.family == "opt":
            h_BxLxD = LayerNorm(c.norm_eps, dt, pdt, name="final_layer_norm")(h_BxLxD) if c.pre_norm else h_BxLxD
        else:
            h_BxLxD = RMSNorm(c.norm_eps, dt, pdt, name="norm")(h_BxLxD)
        if head_pos_BxW is not None:  # the vocabulary head only where logits are wanted (W x cheaper than L)
            h_BxLxD = jnp.take_along_axis(h_BxLxD, head_pos_BxW[:, :, None].astype(jnp.int32), axis=1)
        if c.tie_embeddings:  # dot_general on the V x D table directly (`attend` transposes a copy of it)
            logits_BxWxV = jnp.einsum("bwd,vd->bwv", h_BxLxD, embed.embedding.astype(dt))
        else:
            logits_BxWxV = Linear(c.vocab_size, ("embed", "vocab"), False, dt, pdt, name="lm_head")(h_BxLxD)
        logits_BxWxV = logits_BxWxV.astype(jnp.float32)
        if cache is None:
            return logits_BxWxV
        return logits_BxWxV, KVCache(new_kv[0], new_kv[1], kv_seg_BxS, cache.index + length)


def segment_positions(seg_BxL: jax.Array) -> jax.Array:
    """Position of every token within its run of equal segment ids (a left-padded row: 0, 1, ... from its
    first real token; a packed row: restarting at every sequence)."""
    length = seg_BxL.shape[1]
    idx_L = jnp.arange(length, dtype=jnp.int32)
    prev_BxL = jnp.concatenate([jnp.full_like(seg_BxL[:, :1], -1), seg_BxL[:, :-1]], axis=1)
    start_BxL = jax.lax.cummax(jnp.where(seg_BxL != prev_BxL, idx_L[None, :], 0), axis=1)
    return idx_L[None, :] - start_BxL


def build_model(config: LMConfig, lora: LoraConfig | None = None, *, remat: bool = False) -> CausalLM:
    """The Flax module for `config` (LoRA adapters in the `"lora"` collection when `lora` is given)."""
    return CausalLM(config, lora, remat)


def unstack_layers(tree: Any, n_layers: int) -> Any:
    """`layers` (stacked) -> `layers_0 ... layers_{Z-1}`, for a module with `scan_layers=False`."""
    if tree is None or "layers" not in tree:
        return tree
    out = {k: v for k, v in tree.items() if k != "layers"}
    for i in range(n_layers):
        out[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], tree["layers"])
    return out


def abstract_variables(module: CausalLM) -> dict:
    """Shapes/dtypes (with logical-axis boxes) of every collection, without allocating anything."""
    tok = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda k: module.init({"params": k}, tok, tok), jax.random.key(0))
