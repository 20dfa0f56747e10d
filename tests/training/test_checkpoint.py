"""Checkpointer: bitwise round trip into a sharded target, keep-N, and resume == uninterrupted at step level."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from icma_jax.training.checkpoint import Checkpointer, abstract_state
from icma_jax.training.optim import make_optimizer
from icma_jax.training.state import create_state
from icma_jax.training.step import StepConfig, device_put_batch, make_train_step
from training_tiny_lm import fsdp_shardings, make_batch, mesh_of


def _setup(tiny_lm, mesh):
    module, params, lora = tiny_lm
    tx = make_optimizer(1e-2, warmup_steps=1, total_steps=8)
    state, state_sh = create_state(lora, tx, fsdp_shardings(lora, mesh))
    base_sh = fsdp_shardings(params, mesh)
    base = jax.device_put(params, base_sh)
    step_fn = make_train_step(module.apply, tx, mesh, state_sh, base_sh, StepConfig(mode="lora", dropout=True))
    return state, state_sh, base, step_fn


def _assert_bitwise(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


@pytest.mark.parametrize("typed_key", [True, False])
def test_round_trip_is_bitwise_and_keeps_sharding(tiny_lm, tmp_path, typed_key):
    mesh = mesh_of(2, 4)
    state, state_sh, base, step_fn = _setup(tiny_lm, mesh)
    rng = jax.random.key(3) if typed_key else jax.random.PRNGKey(3)
    state, _ = step_fn(state, base, device_put_batch(make_batch(0, 8, 12), mesh), rng)
    ckpt = Checkpointer(tmp_path / "ckpt")
    position = {"epoch": 1, "index": 17, "order_seed": 42}
    assert ckpt.save(1, state, rng, position)
    ckpt.wait_until_finished()

    target = abstract_state(state, state_sh)
    restored, rng2, pos2 = Checkpointer(tmp_path / "ckpt").restore(target)
    _assert_bitwise(jax.device_get(restored), jax.device_get(state))
    jax.tree.map(lambda r, s: None if r.sharding.is_equivalent_to(s, r.ndim) else pytest.fail(f"{r.sharding} != {s}"),
                 restored, state_sh)
    assert restored.trainable["q"]["a"].sharding.spec == P("fsdp", None)  # [D=16, R=2]
    assert pos2 == position
    assert rng2.dtype == rng.dtype
    np.testing.assert_array_equal(jax.random.key_data(rng2) if typed_key else rng2,
                                  jax.random.key_data(rng) if typed_key else rng)
    ckpt.close()


def test_keeps_last_n_and_restores_latest(tiny_lm, tmp_path):
    mesh = mesh_of(1, 1)
    state, state_sh, base, step_fn = _setup(tiny_lm, mesh)
    ckpt = Checkpointer(tmp_path, max_to_keep=2)
    rng = jax.random.key(0)
    host = {}
    for step in range(1, 5):
        state, _ = step_fn(state, base, device_put_batch(make_batch(step, 4, 8), mesh), rng)
        host[step] = jax.device_get(state)
        ckpt.save(step, state, rng, {"index": step})  # async; the next step donates `state` right away
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [3, 4] and ckpt.latest_step() == 4
    restored, _, pos = ckpt.restore(abstract_state(state, state_sh))
    assert int(restored.step) == 4 and pos == {"index": 4}
    restored3, _, pos3 = ckpt.restore(abstract_state(state, state_sh), step=3)
    assert pos3 == {"index": 3}
    _assert_bitwise(jax.device_get(restored3), host[3])  # the donation after save(3) did not corrupt it
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Checkpointer(tmp_path / "empty").restore(abstract_state(state, state_sh))


def test_resume_equals_uninterrupted(tiny_lm, tmp_path):
    """6 steps straight vs 3 steps, checkpoint, a fresh state/step restored from disk, 3 more: same losses."""
    mesh = mesh_of(2, 2)
    batches = [make_batch(s, 8, 12) for s in range(6)]
    rng = jax.random.key(11)

    state, _, base, step_fn = _setup(tiny_lm, mesh)
    straight = []
    for b in batches:
        state, m = step_fn(state, base, device_put_batch(b, mesh), rng)
        straight.append(float(m["loss"]))
    final_straight = jax.device_get(state)

    state, state_sh, _, _ = _setup(tiny_lm, mesh)  # same jitted step (compiled once), fresh state
    resumed = []
    ckpt = Checkpointer(tmp_path)
    for i, b in enumerate(batches[:3]):
        state, m = step_fn(state, base, device_put_batch(b, mesh), rng)
        resumed.append(float(m["loss"]))
        ckpt.save(i + 1, state, rng, {"next_batch": i + 1})
    ckpt.close()
    del state

    # a fresh start, as after a SIGKILL: the target is only shapes + shardings, nothing of the old state
    target = abstract_state(jax.eval_shape(lambda: final_straight), state_sh)
    state, rng2, pos = Checkpointer(tmp_path).restore(target)
    assert pos == {"next_batch": 3} and int(state.step) == 3
    for b in batches[pos["next_batch"]:]:
        state, m = step_fn(state, base, device_put_batch(b, mesh), rng2)
        resumed.append(float(m["loss"]))
    assert resumed == straight  # bitwise: same per-step losses (dropout key = fold_in(rng, step))
    _assert_bitwise(jax.device_get(state), final_straight)
