"""Training-test helpers: a tiny causal LM with the models' apply contract, batches, meshes, shardings.

B batch, L tokens, D model, V vocab, R LoRA rank.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType

from icma_jax.data.batching import Batch, batch_from_labels

V, D, R = 48, 16, 2


class LoRADense(nn.Module):
    """Dense with a zero-initialised low-rank adapter in the "lora" collection."""

    features: int
    lora: bool = True

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, deterministic: bool) -> jax.Array:
        y = nn.Dense(self.features)(x_BxLxD)
        if not self.lora:
            return y
        a_DxR = self.variable("lora", "a",
                              lambda: 0.3 * jax.random.normal(self.make_rng("params"), (x_BxLxD.shape[-1], R)))
        b_RxF = self.variable("lora", "b", lambda: jnp.zeros((R, self.features)))
        h = nn.Dropout(0.1, deterministic=deterministic)(x_BxLxD)
        return y + h @ a_DxR.value.astype(h.dtype) @ b_RxF.value.astype(h.dtype)


class TinyLM(nn.Module):
    """One causal attention block; positions from the (left-padded) mask, like the real models."""

    remat: bool = False
    lora: bool = True  # False: no "lora" collection (full fine-tuning), like build_model(config, lora=None)

    @nn.compact
    def __call__(self, tokens_BxL, mask_BxL, deterministic: bool = True, head_pos_BxW=None):
        pos_BxL = jnp.maximum(jnp.cumsum(mask_BxL, axis=-1) - 1, 0)
        h = nn.Embed(V, D)(tokens_BxL) + nn.Embed(32, D)(pos_BxL)
        L = tokens_BxL.shape[1]
        allowed_BxLxL = jnp.tril(jnp.ones((L, L), bool))[None] & (mask_BxL[:, None, :] > 0)
        q, k, v = (LoRADense(D, self.lora, name=n)(nn.LayerNorm()(h), deterministic) for n in ("q", "k", "v"))
        att = jnp.where(allowed_BxLxL, q @ jnp.swapaxes(k, 1, 2) / np.sqrt(D), -1e9)
        h = h + jax.nn.softmax(att, axis=-1) @ v
        mlp = nn.remat(LoRADense, static_argnums=(2,)) if self.remat else LoRADense
        h = h + mlp(D, self.lora, name="mlp")(jax.nn.gelu(nn.LayerNorm()(h)), deterministic)
        if head_pos_BxW is not None:
            h = jnp.take_along_axis(h, head_pos_BxW[:, :, None], axis=1)
        return nn.Dense(V)(nn.LayerNorm()(h))


def make_batch(seed: int, b: int, l: int, pad: bool = True) -> Batch:
    """Random left-padded full-width batch; the first half of each row's tokens is prompt (no targets)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, V, size=(b, l), dtype=np.int32)
    mask = np.ones((b, l), np.int32)
    labels = tokens.copy()
    for i in range(b):
        n_pad = int(rng.integers(0, l // 3)) if pad else 0
        mask[i, :n_pad] = 0
        tokens[i, :n_pad] = 0
        labels[i, : n_pad + (l - n_pad) // 2] = -100
    return batch_from_labels(tokens, mask, labels)


def mesh_of(data: int, fsdp: int) -> jax.sharding.Mesh:
    """A ('data', 'fsdp') mesh over the first data*fsdp fake CPU devices."""
    return jax.make_mesh((data, fsdp), ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2,
                         devices=jax.devices()[: data * fsdp])


def fsdp_shardings(tree, mesh: jax.sharding.Mesh):
    """Each leaf's largest dimension divisible by the 'fsdp' size goes over 'fsdp'; the rest is replicated."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    n = mesh.shape["fsdp"]

    def rule(x):
        dims = [d for d in np.argsort(x.shape)[::-1] if x.shape[d] % n == 0 and x.shape[d] >= n]
        spec = [None] * x.ndim
        if dims and n > 1:
            spec[dims[0]] = "fsdp"
        return NamedSharding(mesh, P(*spec))

    return jax.tree.map(rule, tree)
