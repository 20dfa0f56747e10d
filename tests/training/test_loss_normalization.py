"""StepConfig.loss_normalization: token_mean over the whole step vs the mean of micro-batch token means."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from icma_jax.training.state import create_state, replicated_sharding
from icma_jax.training.step import StepConfig, device_put_batch, make_train_step, nll_sums
from training_tiny_lm import make_batch, mesh_of


def _one_step(module, params, lora, batch, config):
    """(loss, gradient) of one step: plain SGD with lr 1 turns the update into minus the gradient."""
    mesh = mesh_of(1, 1)
    tx = optax.sgd(1.0)
    state, state_sh = create_state(lora, tx, replicated_sharding(lora, mesh))
    step_fn = make_train_step(module.apply, tx, mesh, state_sh, replicated_sharding(params, mesh), config)
    new, metrics = step_fn(state, params, device_put_batch(batch, mesh), jax.random.key(0))
    grads = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), lora, jax.device_get(new.trainable))
    return float(metrics["loss"]), grads


def _micro_means(module, params, lora, batch, k):
    """Reference: each micro-batch (rows i, i+k, ...) its own token mean, then the plain mean over the k of them."""
    def mean_loss(lo, rows):
        logits = module.apply({"params": params, "lora": lo}, jnp.asarray(batch.tokens_BxL[rows]),
                              jnp.asarray(batch.segment_ids_BxL[rows]),
                              head_pos_BxW=jnp.asarray(batch.target_pos_BxW[rows]))
        nll, n = nll_sums(logits, jnp.asarray(batch.targets_BxW[rows]))
        return nll / n

    parts = [jax.value_and_grad(mean_loss)(lora, np.arange(j, len(batch.tokens_BxL), k)) for j in range(k)]
    loss = sum(float(v) for v, _ in parts) / k
    return loss, jax.tree.map(lambda *g: sum(np.asarray(x) for x in g) / k, *[g for _, g in parts])


def test_micro_mean_is_the_mean_of_micro_batch_means(tiny_lm):
    module, params, lora = tiny_lm
    batch = make_batch(3, 4, 12)
    counts = [(batch.targets_BxW[j::2] != -100).sum() for j in range(2)]
    assert counts[0] != counts[1]  # unequal micro-batches: the two normalisations differ
    ref_loss, ref_grads = _micro_means(module, params, lora, batch, 2)
    loss, grads = _one_step(module, params, lora, batch, StepConfig("lora", 2, dropout=False,
                                                                     loss_normalization="micro_mean"))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grads, ref_grads)
    token_loss, token_grads = _one_step(module, params, lora, batch, StepConfig("lora", 2, dropout=False))
    assert abs(token_loss - loss) > 1e-4 * abs(loss)
    one_loss, one_grads = _one_step(module, params, lora, batch, StepConfig("lora", 1, dropout=False,
                                                                            loss_normalization="micro_mean"))
    np.testing.assert_allclose(one_loss, token_loss, rtol=1e-5)  # one micro-batch: both are the token mean
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), one_grads, token_grads)


def test_unknown_loss_normalization_is_refused():
    with pytest.raises(ValueError, match="loss_normalization"):
        StepConfig(loss_normalization="sum")
