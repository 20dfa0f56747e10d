"""`CausalLM`: embeddings, a scanned stack of OPT or Llama/Mistral blocks, final norm, (tied) head; KV cache.

Dims: B batch, T new tokens, S cache slots, D model, V vocab, N layers, K kv heads, H head dim.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from icma_jax.models.config import LMConfig
from icma_jax.models.layers import LayerNorm, Linear, RMSNorm, dtype_of
from icma_jax.models.llama import LlamaBlock
from icma_jax.models.lora import LoraConfig
from icma_jax.models.opt import OPTBlock

OPT_POSITION_OFFSET = 2  # OPT's learned position table is shifted by 2 (fairseq legacy)


class KVCache(NamedTuple):
    """Preallocated keys/values for every layer plus which slots hold real tokens; `index` = next free slot."""

    k_NxBxSxKxH: jax.Array
    v_NxBxSxKxH: jax.Array
    mask_BxS: jax.Array
    index: jax.Array


def init_cache(config: LMConfig, batch: int, slots: int) -> KVCache:
    """An empty cache of `slots` positions in the compute dtype."""
    shape = (config.n_layers, batch, slots, config.n_kv_heads, config.head_dim)
    dt = dtype_of(config.dtype)
    return KVCache(jnp.zeros(shape, dt), jnp.zeros(shape, dt), jnp.zeros((batch, slots), jnp.int32),
                   jnp.zeros((), jnp.int32))


class CausalLM(nn.Module):
    """logits_BxTxV = LM(tokens_BxT, mask_BxT); positions come from the mask so left padding is exact.

    Without a cache the mask may hold segment ids (packed rows: 0 = padding, each sequence its own id; a
    token sees earlier tokens of its own segment, positions restart at every segment). With `cache` it
    returns (logits, cache'), writing the T new tokens at slot `cache.index`. The head runs only where
    logits are wanted: `last_only` gives the last position (B x 1 x V), `head_span=(i, j)` positions
    i..j-1 (B x (j-i) x V; training's loss window), `head_index_BxW` the positions it lists (B x W x V)."""

    config: LMConfig
    lora: LoraConfig | None = None
    remat: bool = False
    scan_layers: bool = True  # False: a Python loop over `layers_{i}` params (decoding; see `unstack_layers`)
    fused: bool = False  # q/k/v and gate/up kernels concatenated (`qkv_proj`, `gate_up_proj`): decoding layout

    @nn.compact
    def __call__(self, tokens_BxT: jax.Array, mask_BxT: jax.Array, deterministic: bool = True,
                 cache: KVCache | None = None, last_only: bool = False, head_span: tuple[int, int] | None = None,
                 head_index_BxW: jax.Array | None = None):
        c = self.config
        dt, pdt = dtype_of(c.dtype), dtype_of(c.param_dtype)
        b, t = tokens_BxT.shape
        mask_BxT = mask_BxT.astype(jnp.int32)
        if cache is None:
            kv_mask_BxS, q_slot_T, pos_BxT = mask_BxT, jnp.arange(t), segment_positions(mask_BxT)
        else:
            count_B = jnp.sum(cache.mask_BxS, axis=-1)
            kv_mask_BxS = jax.lax.dynamic_update_slice(cache.mask_BxS, mask_BxT, (0, cache.index))
            q_slot_T = cache.index + jnp.arange(t)
            pos_BxT = jnp.maximum(count_B[:, None] + jnp.cumsum(mask_BxT, axis=1) - 1, 0)

        embed = nn.Embed(c.vocab_size, c.d_model, dtype=dt, param_dtype=pdt, name="embed_tokens",
                         embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed")))
        h_BxTxD = embed(tokens_BxT)
        if c.family == "opt":
            pos_embed = nn.Embed(c.max_positions + OPT_POSITION_OFFSET, c.d_model, dtype=dt, param_dtype=pdt,
                                 name="embed_positions", embedding_init=nn.with_logical_partitioning(
                                     nn.initializers.normal(0.02), (None, "embed")))
            h_BxTxD = h_BxTxD + pos_embed(pos_BxT + OPT_POSITION_OFFSET)

        block = OPTBlock if c.family == "opt" else LlamaBlock
        if self.remat:
            block = nn.remat(block, prevent_cse=False)
        cache_kv = None if cache is None else (cache.k_NxBxSxKxH, cache.v_NxBxSxKxH)
        carry = (h_BxTxD, cache_kv)
        if self.scan_layers:
            layers = nn.scan(block, variable_axes={"params": 0, "lora": 0}, split_rngs={"params": True, "dropout": True},
                             in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, 0), length=c.n_layers,
                             metadata_params={nn.PARTITION_NAME: "layers"})
            carry, _ = layers(c, self.lora, deterministic, self.fused, name="layers")(
                carry, pos_BxT, kv_mask_BxS, q_slot_T, jnp.arange(c.n_layers))
        else:  # weights are loop-invariant inputs, so XLA hoists their per-layer slicing out of a decode loop
            for i in range(c.n_layers):
                carry, _ = block(c, self.lora, deterministic, self.fused, name=f"layers_{i}")(
                    carry, pos_BxT, kv_mask_BxS, q_slot_T, i)
        h_BxTxD, new_kv = carry
        if c.family == "opt":
            h_BxTxD = LayerNorm(c.norm_eps, dt, pdt, name="final_layer_norm")(h_BxTxD) if c.pre_norm else h_BxTxD
        else:
            h_BxTxD = RMSNorm(c.norm_eps, dt, pdt, name="norm")(h_BxTxD)
        if last_only:  # generation's prefill needs only the next-token logits (T x cheaper head)
            h_BxTxD = h_BxTxD[:, -1:]
        elif head_span is not None:
            h_BxTxD = h_BxTxD[:, head_span[0]:head_span[1]]
        elif head_index_BxW is not None:
            h_BxTxD = jnp.take_along_axis(h_BxTxD, head_index_BxW[:, :, None], axis=1)
        if c.tie_embeddings:  # dot_general on the V x D table directly (`attend` transposes a copy of it)
            logits_BxTxV = jnp.einsum("btd,vd->btv", h_BxTxD, embed.embedding.astype(dt))
        else:
            logits_BxTxV = Linear(c.vocab_size, ("embed", "vocab"), False, dt, pdt, name="lm_head")(h_BxTxD)
        logits_BxTxV = logits_BxTxV.astype(jnp.float32)
        if cache is None:
            return logits_BxTxV
        return logits_BxTxV, KVCache(new_kv[0], new_kv[1], kv_mask_BxS, cache.index + t)


def segment_positions(seg_BxT: jax.Array) -> jax.Array:
    """Position of every token within its run of equal segment ids (a left-padded row: 0, 1, ... from its
    first real token; a packed row: restarting at every sequence)."""
    t = seg_BxT.shape[1]
    idx_T = jnp.arange(t, dtype=jnp.int32)
    prev_BxT = jnp.concatenate([jnp.full_like(seg_BxT[:, :1], -1), seg_BxT[:, :-1]], axis=1)
    start_BxT = jax.lax.cummax(jnp.where(seg_BxT != prev_BxT, idx_T[None, :], 0), axis=1)
    return idx_T[None, :] - start_BxT


def build_model(config: LMConfig, lora: LoraConfig | None = None, *, remat: bool = False) -> CausalLM:
    """The Flax module for `config` (LoRA adapters in the `"lora"` collection when `lora` is given)."""
    return CausalLM(config, lora, remat)


def unstack_layers(tree: Any, n_layers: int) -> Any:
    """`layers` (stacked) -> `layers_0 ... layers_{N-1}`, for a module with `scan_layers=False`."""
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
