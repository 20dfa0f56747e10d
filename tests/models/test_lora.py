"""LoRA: identity at init, merge == unmerged, dropout, full fine-tuning path, PEFT export/import vs torch `peft`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icma_jax.models.hf_weights import save_hf_checkpoint
from icma_jax.models.loading import load_model
from icma_jax.models.config import LoraConfig
from icma_jax.models.lora import init_lora, merge_lora, unmerge_lora
from icma_jax.models.peft import export_peft, import_peft

pytestmark = pytest.mark.torch


def _perturb(lora_params, seed=0, scale=0.2):
    """Give B random values (as after some training) so the adapters matter."""
    leaves, treedef = jax.tree.flatten(lora_params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _apply(module, params, lora, tokens, mask, **kw):
    variables = {"params": params} if lora is None else {"params": params, "lora": lora}
    with jax.default_matmul_precision("highest"):
        return np.asarray(module.apply(variables, jnp.asarray(tokens), jnp.asarray(mask), **kw))


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_identity_at_init_merge_and_dropout(tmp_path, hf, family):
    _, directory = hf.save_tiny(tmp_path, family)
    lm = load_model(str(directory), tokenizer=False)
    tokens, mask = hf.padded_batch()
    lcfg = LoraConfig.for_family(family, rank=4, alpha=8.0, dropout=0.5)
    lora = init_lora(lm.module, lcfg, jax.random.key(0), lm.params)
    assert set(jax.tree.leaves(jax.tree.map(lambda x: x.dtype == jnp.float32, lora))) == {True}
    module = lm.module.clone(lora=lcfg)
    base = _apply(lm.module, lm.params, None, tokens, mask)
    np.testing.assert_array_equal(_apply(module, lm.params, lora, tokens, mask), base)  # B = 0
    lora = _perturb(lora)
    adapted = _apply(module, lm.params, lora, tokens, mask)
    assert np.abs(adapted - base).max() > 1e-2
    merged = merge_lora(lm.params, lora, lcfg)
    np.testing.assert_allclose(_apply(lm.module, merged, None, tokens, mask), adapted, atol=1e-4)
    restored = unmerge_lora(merged, lora, lcfg)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5), restored, lm.params)
    drop = _apply(module, lm.params, lora, tokens, mask, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert np.abs(drop - adapted).max() > 1e-3


def test_lora_delta_backward_equals_autodiff():
    """The hand-written backward (small factors transposed) gives autodiff's gradients."""
    from icma_jax.models.linear import lora_delta

    k = jax.random.split(jax.random.key(0), 4)
    h, a, b, w = (jax.random.normal(k[0], (24, 10)), jax.random.normal(k[1], (10, 3)),
                  jax.random.normal(k[2], (3, 7)), jax.random.normal(k[3], (24, 7)))
    ours = jax.grad(lambda *x: jnp.sum(lora_delta(*x) * w), argnums=(0, 1, 2))(h, a, b)
    ref = jax.grad(lambda h, a, b: jnp.sum(h @ a @ b * w), argnums=(0, 1, 2))(h, a, b)
    for x, y in zip(ours, ref):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lora_delta(h, a, b), h @ a @ b, rtol=1e-6)


def test_lora_and_full_gradients(tmp_path, hf):
    _, directory = hf.save_tiny(tmp_path, "llama")
    lm = load_model(str(directory), tokenizer=False)
    tokens, mask = hf.padded_batch()
    lcfg = LoraConfig.for_family("llama", rank=2, targets=("q_proj", "v_proj"))
    module = lm.module.clone(lora=lcfg)
    lora = init_lora(module, lcfg, jax.random.key(0))

    def loss(params, lora_params, mod):
        variables = {"params": params} if lora_params is None else {"params": params, "lora": lora_params}
        return jnp.mean(mod.apply(variables, jnp.asarray(tokens), jnp.asarray(mask)) ** 2)

    g_lora = jax.grad(loss, argnums=1)(lm.params, lora, module)
    assert set(g_lora["layers"]["self_attn"]) == {"q_proj", "v_proj"}  # only the targets are adapted
    assert float(jnp.abs(g_lora["layers"]["self_attn"]["q_proj"]["b"]).max()) > 0  # B learns first (A fixed, B=0)
    g_full = jax.grad(loss)(lm.params, None, lm.module)  # full fine-tuning: same module, every parameter
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(g_full))


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_peft_export_matches_torch_peft_and_merged_checkpoint(tmp_path, hf, family):
    peft = pytest.importorskip("peft")
    model, directory = hf.save_tiny(tmp_path, family)
    lm = load_model(str(directory), tokenizer=False)
    tokens, mask = hf.padded_batch()
    lcfg = LoraConfig.for_family(family, rank=4, alpha=16.0, dropout=0.0)
    lora = _perturb(init_lora(lm.module, lcfg, jax.random.key(0)))
    ours = _apply(lm.module.clone(lora=lcfg), lm.params, lora, tokens, mask)
    export_peft(tmp_path / "adapter", lora, lcfg, lm.config, str(directory))
    peft_model = peft.PeftModel.from_pretrained(model, str(tmp_path / "adapter")).eval()
    ref = hf.torch_logits(peft_model, tokens, mask)
    real = mask.astype(bool)
    assert np.abs(ours[real] - ref[real]).max() <= 1e-4
    # merged HF checkpoint: transformers loads it and gives the adapted logits
    save_hf_checkpoint(tmp_path / "merged", merge_lora(lm.params, lora, lcfg), lm.config)
    merged = type(model).from_pretrained(str(tmp_path / "merged")).eval()
    assert np.abs(hf.torch_logits(merged, tokens, mask)[real] - ref[real]).max() <= 1e-4


def test_peft_import_from_torch(tmp_path, hf):
    peft = pytest.importorskip("peft")
    torch = hf.torch
    model, directory = hf.save_tiny(tmp_path, "mistral", sliding_window=None)
    cfg = peft.LoraConfig(r=3, lora_alpha=6, lora_dropout=0.0, target_modules=["q_proj", "o_proj", "down_proj"],
                          task_type="CAUSAL_LM")
    peft_model = peft.get_peft_model(model, cfg).eval()
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    tokens, mask = hf.padded_batch()
    ref = hf.torch_logits(peft_model, tokens, mask)
    lm = load_model(str(directory), tokenizer=False)
    lcfg, lora = import_peft(tmp_path / "adapter", lm.module)
    assert (lcfg.rank, lcfg.alpha, set(lcfg.targets)) == (3, 6.0, {"q_proj", "o_proj", "down_proj"})
    ours = _apply(lm.module.clone(lora=lcfg), lm.params, lora, tokens, mask)
    real = mask.astype(bool)
    assert np.abs(ours[real] - ref[real]).max() <= 1e-4


def test_peft_import_refuses_unsupported_options(tmp_path, hf):
    import json

    _, directory = hf.save_tiny(tmp_path, "llama")
    lm = load_model(str(directory), tokenizer=False)
    lcfg = LoraConfig.for_family("llama", rank=2)
    export_peft(tmp_path / "a", init_lora(lm.module, lcfg, jax.random.key(0)), lcfg, lm.config)
    cfg_path = tmp_path / "a" / "adapter_config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "use_dora": True}))
    with pytest.raises(ValueError, match="use_dora"):
        import_peft(tmp_path / "a", lm.module)
