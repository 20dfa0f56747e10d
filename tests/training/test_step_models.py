"""The train step on the real model code (tiny random Llama / OPT): sharded 2x2x2 == one device, LoRA and full."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from icma_jax.models.config import LMConfig
from icma_jax.models.lora import LoraConfig, init_lora
from icma_jax.models.transformer import abstract_variables, build_model
from icma_jax.sharding import make_mesh, param_shardings
from icma_jax.training.state import create_state, replicated_sharding
from icma_jax.training.step import StepConfig, device_put_batch, make_train_step
from training_tiny_lm import make_batch

VOCAB = 48


def _config(family: str) -> LMConfig:
    extra = {"activation": "relu", "attention_bias": True, "mlp_bias": True} if family == "opt" else {}
    return LMConfig(family=family, vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=4,
                    n_kv_heads=4 if family == "opt" else 2, head_dim=4, d_ff=32, max_positions=64, **extra)


@functools.lru_cache(maxsize=None)
def _init(family: str, mode: str, dropout: float = 0.0):
    """(config, module, params, adapters or None) on the default device; shared by both meshes."""
    cfg = _config(family)
    lora_cfg = LoraConfig.for_family(family, rank=2, alpha=4.0, dropout=dropout) if mode == "lora" else None
    module = build_model(cfg, lora_cfg)
    tok = jnp.zeros((1, 1), jnp.int32)
    params = jax.jit(lambda k: nn.meta.unbox(build_model(cfg).init({"params": k}, tok, tok)["params"]))(
        jax.random.key(0))
    # B = 0 at init; move it so that the A gradients are non-zero too
    lora = jax.tree.map(lambda x: x + 0.02, init_lora(module, lora_cfg, jax.random.key(1))) if lora_cfg else None
    return cfg, module, params, lora


def _train(family, mode, mesh, sharded, batches, accum, dropout=0.0):
    cfg, module, params, lora = _init(family, mode, dropout)
    abstract = abstract_variables(build_model(cfg))["params"]
    base_sh = param_shardings(abstract, mesh) if sharded else replicated_sharding(params, mesh)
    if mode == "lora":
        trainable, trainable_sh, base = lora, replicated_sharding(lora, mesh), jax.device_put(params, base_sh)
    else:
        trainable, trainable_sh, base, base_sh = params, base_sh, {}, {}
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.5))  # see test_step._sgd
    state, state_sh = create_state(trainable, tx, trainable_sh)
    step_fn = make_train_step(module.apply, tx, mesh, state_sh, base_sh, StepConfig(mode=mode, accum_steps=accum))
    losses = []
    for b in batches:
        state, m = step_fn(state, base, device_put_batch(b, mesh), jax.random.key(5))
        losses.append(float(m["loss"]))
    return jax.device_get(state), losses, state


@pytest.mark.parametrize("family,mode,accum,dropout", [("llama", "lora", 2, 0.0), ("opt", "full", 1, 0.0),
                                                       ("llama", "lora", 2, 0.3)])
def test_real_model_sharded_step_equals_single_device(family, mode, accum, dropout):
    """With LoRA dropout too: its masks hash each element's global index, so every layout draws the same."""
    batches = [make_batch(s, 8, 12) for s in range(2)]
    one, l1, _ = _train(family, mode, make_mesh(1, 1, 1, devices=jax.devices()[:1]), False, batches, accum, dropout)
    eight, l8, live = _train(family, mode, make_mesh(2, 2, 2), True, batches, accum, dropout)
    if dropout:
        _, l0, _ = _train(family, mode, make_mesh(1, 1, 1, devices=jax.devices()[:1]), False, batches, accum)
        assert abs(l0[1] - l1[1]) > 1e-4  # dropout really changed the training
    np.testing.assert_allclose(l1, l8, rtol=2e-5)
    assert l1[1] != l1[0]  # the first update changed the model
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), one, eight)
    if mode == "full":  # FSDP/tensor sharding of the trainable tree survives the step
        specs = {tuple(x.sharding.spec) for x in jax.tree.leaves(live.trainable)}
        assert any("fsdp" in s or ("fsdp",) in s for s in specs), specs


def test_real_model_remat_step_equals_plain():
    """build_model(..., remat=True) through our step: same loss and updated adapters as without remat."""
    cfg, module, params, lora = _init("llama", "lora")
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.5))
    batch = device_put_batch(make_batch(0, 4, 12), mesh)
    results = []
    for remat in (False, True):
        state, state_sh = create_state(lora, tx, replicated_sharding(lora, mesh))
        step_fn = make_train_step(module.clone(remat=remat).apply, tx, mesh, state_sh,
                                  replicated_sharding(params, mesh), StepConfig(mode="lora"))
        state, m = step_fn(state, params, batch, jax.random.key(0))
        results.append((float(m["loss"]), jax.device_get(state.trainable)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), results[0][1], results[1][1])


@pytest.mark.parametrize("family,mode,accum", [("llama", "lora", 1), ("opt", "full", 2)])
def test_packed_rows_train_like_padded_rows(family, mode, accum):
    """The same 6 sequences left-padded one per row or packed 3 to a row (2 more rows empty): the same loss
    and update, on one device and sharded 2 x 2 x 2."""
    from icma_jax.data.batching import loss_window, pack_batch, pad_batch
    from icma_jax.data.prompts import IGNORE, Encoded

    rng = np.random.default_rng(0)
    seqs = []
    for n in (9, 5, 12, 7, 4, 11):
        ids = rng.integers(1, VOCAB, n).astype(np.int32)
        labels = np.where(np.arange(n) >= n // 2, ids, IGNORE).astype(np.int32)
        seqs.append(Encoded(ids, labels, 0))
    padded = loss_window(pad_batch(seqs, 12, 6, 0))
    packed = loss_window(pack_batch([seqs[:3], seqs[3:]], 28, 4, 0))
    tail = lambda pos_BxW: (pos_BxW == pos_BxW[:1]).all()  # noqa: E731  (every row the same window)
    assert tail(padded.target_pos_BxW) and not tail(packed.target_pos_BxW)  # a tail window vs gathered positions
    assert (packed.segment_ids_BxL > 0).sum() == (padded.segment_ids_BxL > 0).sum()
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    (a, la, _), (b, lb, _) = (_train(family, mode, mesh, False, [x, x], accum if x is packed else 1)
                              for x in (padded, packed))
    c, lc, _ = _train(family, mode, make_mesh(2, 2, 2), True, [packed, packed], 1)
    np.testing.assert_allclose(la, lb, rtol=2e-5)
    np.testing.assert_allclose(lb, lc, rtol=2e-5)
    for other in (b, c):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, other)
