"""LoRA gradients against a reference: autodiff through the merged weight W + (alpha/r) A B of the base model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icma_jax.models import LMConfig, LoraConfig, build_model, init_lora, merge_lora


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_adapter_gradients_equal_autodiff_of_the_merged_weight(family):
    extra = {"activation": "relu", "attention_bias": True, "mlp_bias": True} if family == "opt" else {}
    cfg = LMConfig(family=family, vocab_size=40, d_model=16, n_layers=2, n_heads=4,
                   n_kv_heads=4 if family == "opt" else 2, head_dim=4, d_ff=32, max_positions=32, **extra)
    lcfg = LoraConfig.for_family(family, rank=2, alpha=6.0, dropout=0.0)
    tok0 = jnp.zeros((1, 1), jnp.int32)
    params = nn.meta.unbox(build_model(cfg).init({"params": jax.random.key(0)}, tok0, tok0)["params"])
    adapted = build_model(cfg, lcfg)
    shift = jax.random.key(2)
    lora = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(shift, x.shape),
                        init_lora(adapted, lcfg, jax.random.key(1)))
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(1, 40, (3, 9)), jnp.int32)
    mask = jnp.asarray(np.arange(9)[None, :] >= np.array([[0], [3], [5]]), jnp.int32)  # left padding
    targets = jnp.asarray(rng.integers(0, 40, (3, 9)), jnp.int32)

    def nll(logits):
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))
        return -jnp.sum(jnp.take_along_axis(logp, targets[..., None], -1)[..., 0] * mask)

    with jax.default_matmul_precision("highest"):
        ours = jax.grad(lambda lp: nll(adapted.apply({"params": params, "lora": lp}, tokens, mask)))(lora)
        merged = lambda lp: {"params": merge_lora(params, lp, lcfg)}  # noqa: E731
        ref = jax.grad(lambda lp: nll(build_model(cfg).apply(merged(lp), tokens, mask)))(lora)
    leaves = jax.tree_util.tree_leaves_with_path(ours)
    assert len(leaves) == 2 * len(lcfg.targets)  # every targeted linear has A and B
    for (path, g), r in zip(leaves, jax.tree.leaves(ref)):
        scale = np.abs(r).max()
        assert scale > 0, jax.tree_util.keystr(path)
        np.testing.assert_allclose(g, r, rtol=0, atol=2e-5 * scale, err_msg=jax.tree_util.keystr(path))
