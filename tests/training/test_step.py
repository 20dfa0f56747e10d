"""The train step: HF loss semantics, sharded == single device, compile once, accumulation, overfit, bf16, remat."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from icma_jax.data.batching import batch_from_labels, loss_window
from icma_jax.training.optim import make_optimizer
from icma_jax.training.state import create_state, replicated_sharding
from icma_jax.training.step import (
    StepConfig,
    check_finite,
    device_put_batch,
    make_eval_step,
    make_train_step,
    nll_sums,
)
from training_tiny_lm import TinyLM, fsdp_shardings, make_batch, mesh_of


def _run(module, params, lora, batches, mesh, config, *, sharded=False, lr=1e-2, apply_fn=None, tx=None):
    """Train on `batches` with a fresh state; returns (final state as NumPy, per-step metrics as NumPy)."""
    trainable, base = (lora, params) if config.mode == "lora" else (params, {})
    module = module if config.mode == "lora" else module.clone(lora=False)
    shard = (lambda t: fsdp_shardings(t, mesh)) if sharded else (lambda t: replicated_sharding(t, mesh))
    tx = tx or make_optimizer(lr, warmup_steps=1, total_steps=max(2, len(batches)))
    state, state_sh = create_state(trainable, tx, shard(trainable))
    base_sh = shard(base)
    base = jax.device_put(base, base_sh)
    step_fn = make_train_step(apply_fn or module.apply, tx, mesh, state_sh, base_sh, config)
    rng = jax.random.key(7)
    history = []
    for batch in batches:
        state, metrics = step_fn(state, base, device_put_batch(batch, mesh), rng)
        history.append(jax.device_get(metrics))
    return jax.device_get(state), history, step_fn


def _sgd() -> optax.GradientTransformation:
    """For equality tests. Adam's first steps are lr * sign(g): 1e-9 summation-order noise in near-zero
    gradients becomes an lr-sized difference. SGD shows the step itself (loss, grads, update) is equal."""
    return optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.5))


@pytest.mark.torch
def test_loss_matches_torch_shifted_cross_entropy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 11)).astype(np.float32)
    labels = rng.integers(0, 11, size=(3, 7)).astype(np.int32)
    labels[:, :3] = -100
    labels[1, 5] = -100
    batch = batch_from_labels(np.ones_like(labels), np.ones_like(labels), labels)  # the shift
    nll, n = nll_sums(jnp.take_along_axis(jnp.asarray(logits), jnp.asarray(batch.target_pos_BxW)[:, :, None], axis=1),
                      jnp.asarray(batch.targets_BxW))
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(logits[:, :-1]).reshape(-1, 11), torch.tensor(labels[:, 1:]).reshape(-1).long(), ignore_index=-100
    )
    assert int(n) == int((labels[:, 1:] != -100).sum())
    np.testing.assert_allclose(float(nll / n), float(ref), rtol=1e-6)


@pytest.mark.parametrize("mode,accum", [("lora", 1), ("full", 2)])
def test_sharded_step_equals_single_device(tiny_lm, mode, accum):
    module, params, lora = tiny_lm
    config = StepConfig(mode=mode, accum_steps=accum, dropout=False)
    batches = [make_batch(s, 16, 12) for s in range(3)]
    tx = _sgd()
    single, h1, _ = _run(module, params, lora, batches, mesh_of(1, 1), config, tx=tx)
    sharded, h8, _ = _run(module, params, lora, batches, mesh_of(2, 4), config, sharded=True, tx=tx)
    for a, b in zip(h1, h8):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-5)
        np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=2e-5)
        assert a["n_tokens"] == b["n_tokens"]
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), single, sharded)
    assert int(sharded.step) == 3


def test_sharded_state_really_is_sharded(tiny_lm):
    """fsdp-sharded trainable: the Adam moments follow their parameter, counters replicated; output keeps it."""
    module, params, lora = tiny_lm
    mesh = mesh_of(2, 4)
    tx = make_optimizer(1e-2, 1, 10)
    sh = fsdp_shardings(params, mesh)
    state, state_sh = create_state(params, tx, sh)
    assert state.trainable["Embed_0"]["embedding"].sharding.spec == P("fsdp", None)  # [V=48, D]
    mu = optax.tree_utils.tree_get(state.opt_state, "mu")
    assert mu["Embed_0"]["embedding"].sharding.spec == P("fsdp", None)
    assert state.step.sharding.spec == P()
    step_fn = make_train_step(
        module.clone(lora=False).apply, tx, mesh, state_sh, replicated_sharding({}, mesh), StepConfig(mode="full")
    )
    new_state, _ = step_fn(state, {}, device_put_batch(make_batch(0, 8, 8), mesh), jax.random.key(0))
    assert new_state.trainable["Embed_0"]["embedding"].sharding == sh["Embed_0"]["embedding"]
    assert state.step.is_deleted()  # donated


def test_compiles_once_per_length_bucket(tiny_lm):
    module, params, lora = tiny_lm
    traces = []

    @chex.assert_max_traces(n=2)  # raises on a third trace
    def counting_apply(*args, **kwargs):
        traces.append(args[1].shape)
        return module.apply(*args, **kwargs)

    batches = [make_batch(s, 8, 8) for s in range(3)] + [make_batch(9, 8, 16)] * 2 + [make_batch(4, 8, 8)]
    _, history, step_fn = _run(module, params, lora, batches, mesh_of(4, 2), StepConfig(), apply_fn=counting_apply)
    assert traces == [(8, 8), (8, 16)], traces  # one trace per bucket, none for later steps
    assert all(np.isfinite(h["loss"]) for h in history)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_accumulating_k_micro_batches_equals_one_big_batch(tiny_lm, mode):
    module, params, lora = tiny_lm
    batches = [make_batch(s, 8, 12) for s in range(2)]  # uneven label counts per row: token mean matters
    mesh = mesh_of(2, 1)
    one, h1, _ = _run(module, params, lora, batches, mesh, StepConfig(mode=mode, accum_steps=1, dropout=False),
                      tx=_sgd())
    four, h4, _ = _run(module, params, lora, batches, mesh, StepConfig(mode=mode, accum_steps=4, dropout=False),
                       tx=_sgd())
    for a, b in zip(h1, h4):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
        assert a["n_tokens"] == b["n_tokens"]
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), one, four)


@pytest.mark.parametrize("mode,accum", [("lora", 1), ("full", 2)])
def test_loss_window_step_equals_full_labels(tiny_lm, mode, accum):
    module, params, lora = tiny_lm
    batches = [make_batch(s, 8, 12) for s in range(2)]
    windowed = [loss_window(b) for b in batches]
    assert all(w.targets_BxW.shape == (8, 6) for w in windowed)  # the head runs on 6 of 12 positions
    config, mesh = StepConfig(mode=mode, accum_steps=accum, dropout=False), mesh_of(2, 1)
    full, h_full, _ = _run(module, params, lora, batches, mesh, config, tx=_sgd())
    win, h_win, _ = _run(module, params, lora, windowed, mesh, config, tx=_sgd())
    for a, b in zip(h_full, h_win):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
        assert a["n_tokens"] == b["n_tokens"]
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), full, win)


def test_accumulation_rejects_indivisible_batch(tiny_lm):
    module, params, lora = tiny_lm
    with pytest.raises(ValueError, match="accum_steps=3"):
        _run(module, params, lora, [make_batch(0, 8, 8)], mesh_of(1, 1), StepConfig(accum_steps=3))


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_loss_decreases_on_tiny_overfit_set(tiny_lm, mode):
    module, params, lora = tiny_lm
    batch = make_batch(3, 4, 12, pad=False)
    _, history, _ = _run(module, params, lora, [batch] * 40, mesh_of(2, 2), StepConfig(mode=mode), lr=1e-1)
    losses = [float(h["loss"]) for h in history]
    # rank-2 adapters on frozen random weights memorise less than full fine-tuning: a looser bar for LoRA
    assert losses[-1] < (0.6 if mode == "lora" else 0.3) * losses[0], losses
    assert history[0]["lr"] == 0.0 and history[1]["lr"] > 0.0  # HF warm-up: the first update uses lr 0


def test_only_trainable_tree_changes_and_dropout_is_applied(tiny_lm):
    module, params, lora = tiny_lm
    batch = make_batch(1, 4, 12)
    state, history, _ = _run(module, params, lora, [batch] * 3, mesh_of(1, 1), StepConfig(mode="lora", dropout=True))
    assert jax.tree.structure(state.trainable) == jax.tree.structure(lora)
    assert not np.allclose(state.trainable["q"]["b"], lora["q"]["b"])
    again, history2, _ = _run(module, params, lora, [batch] * 3, mesh_of(1, 1), StepConfig(mode="lora", dropout=True))
    np.testing.assert_array_equal([h["loss"] for h in history], [h["loss"] for h in history2])  # deterministic
    nodrop, history3, _ = _run(module, params, lora, [batch] * 3, mesh_of(1, 1), StepConfig(mode="lora", dropout=False))
    assert history3[0]["loss"] != history[0]["loss"]  # dropout is really applied while training


def test_dropout_masks_differ_across_steps_and_micro_batches(tiny_lm):
    """Each (step, micro-batch) draws its own dropout key; a rerun draws the same keys again."""
    module, params, lora = tiny_lm
    steps, k = 3, 2

    def keys_of_a_run():
        seen = set()

        def recording_apply(variables, *args, rngs, **kwargs):
            jax.debug.callback(lambda key: seen.add(np.asarray(key).tobytes()), jax.random.key_data(rngs["dropout"]))
            return module.apply(variables, *args, rngs=rngs, **kwargs)

        tx = optax.sgd(0.0)  # the state never changes: only the dropout draw can move the loss
        _, history, _ = _run(module, params, lora, [make_batch(1, 4, 12)] * steps, mesh_of(1, 1),
                             StepConfig(mode="lora", accum_steps=k, dropout=True), apply_fn=recording_apply, tx=tx)
        return seen, [float(h["loss"]) for h in history]

    keys, losses = keys_of_a_run()
    assert len(keys) == steps * k, f"{len(keys)} distinct dropout keys over {steps} steps x {k} micro-batches"
    assert len(set(losses)) == steps, f"the same batch on an unchanged state gave equal losses {losses}"
    assert keys_of_a_run() == (keys, losses)


def test_bf16_compute_keeps_fp32_state_and_is_close(tiny_lm):
    module, params, lora = tiny_lm
    batches = [make_batch(s, 4, 12) for s in range(2)]
    f32, h32, _ = _run(module, params, lora, batches, mesh_of(1, 1), StepConfig(dropout=False))
    b16, h16, _ = _run(module, params, lora, batches, mesh_of(1, 1),
                       StepConfig(dropout=False, cast_weights_to="bfloat16"))
    assert {x.dtype for x in jax.tree.leaves(b16.trainable)} == {np.dtype(np.float32)}
    assert {x.dtype for x in jax.tree.leaves(b16.opt_state) if np.ndim(x)} == {np.dtype(np.float32)}
    for a, b in zip(h32, h16):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-2)
        assert a["loss"] != b["loss"]  # bf16 really was used


def test_remat_equals_no_remat(tiny_lm):
    module, params, lora = tiny_lm
    batches = [make_batch(s, 4, 12) for s in range(2)]
    plain, hp, _ = _run(module, params, lora, batches, mesh_of(1, 1), StepConfig(mode="full", dropout=False))
    remat, hr, _ = _run(TinyLM(remat=True), params, lora, batches, mesh_of(1, 1),
                        StepConfig(mode="full", dropout=False))
    np.testing.assert_allclose([h["loss"] for h in hp], [h["loss"] for h in hr], rtol=1e-6)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), plain, remat)


def test_eval_step_matches_train_loss_without_update(tiny_lm):
    module, params, lora = tiny_lm
    mesh = mesh_of(4, 1)
    batch = make_batch(5, 8, 12)
    eval_fn = make_eval_step(module.apply, mesh, replicated_sharding(lora, mesh), replicated_sharding(params, mesh))
    out = jax.device_get(eval_fn(lora, params, device_put_batch(batch, mesh)))
    _, history, _ = _run(module, params, lora, [batch], mesh, StepConfig(dropout=False))
    np.testing.assert_allclose(out["nll_sum"] / out["n_tokens"], history[0]["loss"], rtol=1e-6)


def test_step_runs_under_transfer_guard(tiny_lm):
    """No implicit host<->device transfer in state creation, the step, or check_finite."""
    module, params, lora = tiny_lm
    mesh = mesh_of(2, 1)
    tx = make_optimizer(1e-2, 1, 4)
    lora, params = jax.device_put((lora, params), replicated_sharding((lora, params), mesh))
    # the key is made and replicated explicitly before the guard (as the loop must)
    batch, rng = make_batch(0, 4, 8), jax.device_put(jax.random.key(0), NamedSharding(mesh, P()))
    with jax.transfer_guard("disallow"):
        state, state_sh = create_state(lora, tx, replicated_sharding(lora, mesh))
        step_fn = make_train_step(module.apply, tx, mesh, state_sh, replicated_sharding(params, mesh), StepConfig())
        state, metrics = step_fn(state, params, device_put_batch(batch, mesh), rng)
        check_finite(metrics, 1)


def test_check_finite_names_the_step():
    check_finite({"loss": np.float32(1.0), "grad_norm": np.float32(2.0)}, 3)
    with pytest.raises(FloatingPointError, match="step 12"):
        check_finite({"loss": np.float32(np.nan), "grad_norm": np.float32(1.0)}, 12)
    with pytest.raises(FloatingPointError, match="grad_norm"):
        check_finite({"loss": np.float32(1.0), "grad_norm": np.float32(np.inf)}, 1)


def test_step_config_validates():
    with pytest.raises(ValueError, match="mode"):
        StepConfig(mode="qlora")
    with pytest.raises(ValueError, match="accum_steps"):
        StepConfig(accum_steps=0)
    assert dataclasses.replace(StepConfig(), cast_weights_to="bfloat16").cast_weights_to == "bfloat16"
