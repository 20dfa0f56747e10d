"""The pure train step (causal-LM loss, gradient accumulation, AdamW update) and its single jit site.

Dims (package legend): B batch rows, L tokens, W target positions, V vocabulary, Y micro-batches.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from icma_jax.training.optim import current_lr
from icma_jax.training.state import TrainState

PyTree = Any
# module.apply(variables, tokens_BxL, segment_ids_BxL, deterministic=, rngs=, head_pos_BxW=)
ApplyFn = Callable[..., jax.Array]
BATCH_AXES = ("data", "fsdp")  # batch rows are split over both mesh axes (FSDP is data parallel too)
IGNORE = -100
LOSS_NORMALIZATIONS = ("token_mean", "micro_mean")


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static knobs of the train step (bound before jit)."""

    mode: str = "lora"  # "lora": differentiate the "lora" collection; "full": differentiate "params"
    accum_steps: int = 1  # micro-batches per update; the loss is a token mean over all of them
    cast_weights_to: str | None = None  # e.g. "bfloat16": weights cast inside the loss; grads/opt stay fp32
    dropout: bool = True  # apply the model's dropout (deterministic=False) while training
    # token_mean: summed NLL / label tokens of the whole batch (transformers >= 4.46); micro_mean: the mean of
    # each micro-batch's token mean (transformers <= 4.45, which the original ICMA release trained with)
    loss_normalization: str = "token_mean"

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full"):
            raise ValueError(f"StepConfig.mode must be 'lora' or 'full', got {self.mode!r}")
        if self.loss_normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(f"StepConfig.loss_normalization must be one of {LOSS_NORMALIZATIONS}, "
                             f"got {self.loss_normalization!r}")
        if self.accum_steps < 1:
            raise ValueError(f"StepConfig.accum_steps must be >= 1, got {self.accum_steps}")
        if self.cast_weights_to is not None:
            jnp.dtype(self.cast_weights_to)  # raises TypeError on an unknown dtype name


def nll_sums(logits_BxWxV: jax.Array, targets_BxW: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum of NLL, count) of already-aligned targets (logits w predict targets w), -100 ignored."""
    logits_BxWxV = logits_BxWxV.astype(jnp.float32)
    valid_BxW = targets_BxW != IGNORE
    nll_BxW = optax.softmax_cross_entropy_with_integer_labels(logits_BxWxV, jnp.where(valid_BxW, targets_BxW, 0))
    return jnp.sum(jnp.where(valid_BxW, nll_BxW, 0.0)), jnp.sum(valid_BxW, dtype=jnp.int32)


def _cast_floats(tree: PyTree, dtype: str | None) -> PyTree:
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _variables(config: StepConfig, trainable: PyTree, base: PyTree) -> dict:
    trainable, base = _cast_floats(trainable, config.cast_weights_to), _cast_floats(base, config.cast_weights_to)
    return {"params": base, "lora": trainable} if config.mode == "lora" else {"params": trainable}


def _split_micro(x_BxL: jax.Array, k: int, mesh: Mesh | None) -> jax.Array:
    """[B, L] -> [Y, B/Y, L] with row i in micro-batch i % Y, so each device keeps its own rows."""
    b = x_BxL.shape[0]
    if b % k:
        raise ValueError(f"batch of {b} rows does not split into accum_steps={k} micro-batches")
    x_YxBxL = jnp.swapaxes(x_BxL.reshape(b // k, k, *x_BxL.shape[1:]), 0, 1)
    if mesh is not None:
        x_YxBxL = jax.lax.with_sharding_constraint(x_YxBxL, NamedSharding(mesh, P(None, BATCH_AXES)))
    return x_YxBxL


def _loss_sums(
    trainable: PyTree, base: PyTree, batch: Any, key: jax.Array, *, apply_fn: ApplyFn, config: StepConfig
) -> tuple[jax.Array, jax.Array]:
    """(sum of NLL, number of targets) of a `data.batching.Batch`: the head runs only on the W positions
    `target_pos_BxW` (after `loss_window`, a W/L share of the vocabulary projection and softmax), whose
    logits predict `targets_BxW`."""
    logits_BxWxV = apply_fn(
        _variables(config, trainable, base), batch.tokens_BxL, batch.segment_ids_BxL,
        deterministic=not config.dropout, rngs={"dropout": key}, head_pos_BxW=batch.target_pos_BxW,
    )
    return nll_sums(logits_BxWxV, batch.targets_BxW)


def train_step(
    state: TrainState,
    base: PyTree,
    batch: Any,
    rng: jax.Array,
    *,
    apply_fn: ApplyFn,
    optimizer: optax.GradientTransformation,
    config: StepConfig,
    mesh: Mesh | None = None,
    trainable_sharding: PyTree | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One update on a global batch: Y micro-batches scanned, gradients of the summed NLL / total label tokens
    (`micro_mean`: each micro-batch's NLL over its own label tokens, then / K)."""
    k = config.accum_steps
    micro_mean = config.loss_normalization == "micro_mean" and k > 1
    step_key = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(functools.partial(_loss_sums, apply_fn=apply_fn, config=config), has_aux=True)
    # keep gradient sums in the parameters' sharding (FSDP: reduce-scattered, never a full replica in the loop)
    constrain = (lambda g: g) if trainable_sharding is None else (
        lambda g: jax.lax.with_sharding_constraint(g, trainable_sharding))

    if k == 1:
        (nll_sum, n_tokens), grad_sums = grad_fn(state.trainable, base, batch, jax.random.fold_in(step_key, 0))
        grad_sums = constrain(jax.tree.map(lambda g: g.astype(jnp.float32), grad_sums))
    else:
        micro = jax.tree.map(lambda x: _split_micro(x, k, mesh), batch)

        def accumulate(carry, xs):
            grads_acc, nll_acc, n_acc = carry
            i, mb = xs
            (nll, n), grads = grad_fn(state.trainable, base, mb, jax.random.fold_in(step_key, i))
            if micro_mean:  # this micro-batch's token mean
                w = 1.0 / jnp.maximum(n, 1).astype(jnp.float32)
                grads, nll = jax.tree.map(lambda g: g * w, grads), nll * w
            return (constrain(jax.tree.map(jnp.add, grads_acc, grads)), nll_acc + nll, n_acc + n), None

        zeros = constrain(jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.trainable))
        init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        (grad_sums, nll_sum, n_tokens), _ = jax.lax.scan(accumulate, init, (jnp.arange(k), micro))

    denom = jnp.float32(k) if micro_mean else jnp.maximum(n_tokens, 1).astype(jnp.float32)
    grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), grad_sums, state.trainable)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
    new_state = TrainState(step=state.step + 1, trainable=optax.apply_updates(state.trainable, updates),
                           opt_state=opt_state)
    metrics = {
        "loss": nll_sum / denom,
        "grad_norm": optax.global_norm(grads),
        "lr": current_lr(opt_state),
        "n_tokens": n_tokens,
    }
    return new_state, metrics


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batch rows split over ('data', 'fsdp'); the length axis whole."""
    return NamedSharding(mesh, P(BATCH_AXES))


def process_rows(mesh: Mesh, n_rows: int) -> np.ndarray:
    """The global batch rows this process feeds, ascending: the union of the row blocks the batch sharding
    puts on its devices (the order `make_array_from_process_local_data` expects), for any mesh layout."""
    index_map = batch_sharding(mesh).addressable_devices_indices_map((n_rows,))
    blocks = {(sl[0].start or 0, n_rows if sl[0].stop is None else sl[0].stop) for sl in index_map.values()}
    return np.concatenate([np.arange(a, b) for a, b in sorted(blocks)])


def host_rows(batch: Any, mesh: Mesh) -> Any:
    """This process's rows of a global host batch (every process computes the same global batch)."""
    rows = process_rows(mesh, jax.tree.leaves(batch)[0].shape[0])
    return jax.tree.map(lambda x: x[rows], batch)


def device_put_batch(batch: Any, mesh: Mesh) -> Any:
    """Host NumPy batch -> global sharded arrays; on several hosts each passes its own rows (its shard)."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def make_train_step(
    apply_fn: ApplyFn,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    state_sharding: TrainState,
    base_sharding: PyTree,
    config: StepConfig = StepConfig(),
) -> Callable[[TrainState, PyTree, Any, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """The one jit site: `step_fn(state, base, batch, rng)`, state donated, compiled once per batch shape."""
    replicated = NamedSharding(mesh, P())
    step = functools.partial(train_step, apply_fn=apply_fn, optimizer=optimizer, config=config, mesh=mesh,
                             trainable_sharding=state_sharding.trainable)
    return jax.jit(
        step,
        in_shardings=(state_sharding, base_sharding, batch_sharding(mesh), replicated),  # state, base, batch, rng
        out_shardings=(state_sharding, replicated),  # state, metrics
        donate_argnums=(0,),  # the state; the frozen base is reused by every step
    )


def make_eval_step(
    apply_fn: ApplyFn, mesh: Mesh, trainable_sharding: PyTree, base_sharding: PyTree, config: StepConfig = StepConfig()
) -> Callable[[PyTree, PyTree, Any], dict[str, jax.Array]]:
    """Jitted validation loss pieces: `eval_fn(trainable, base, batch) -> {"nll_sum", "n_tokens"}` (no dropout)."""
    eval_config = dataclasses.replace(config, dropout=False)

    def eval_step(trainable: PyTree, base: PyTree, batch: Any) -> dict[str, jax.Array]:
        nll, n = _loss_sums(trainable, base, batch, jax.random.key(0), apply_fn=apply_fn, config=eval_config)
        return {"nll_sum": nll, "n_tokens": n}

    replicated = NamedSharding(mesh, P())
    return jax.jit(
        eval_step,
        in_shardings=(trainable_sharding, base_sharding, batch_sharding(mesh)),  # trainable, base, batch
        out_shardings=replicated,
    )


def check_finite(metrics: dict[str, Any], step: int) -> None:
    """Raise FloatingPointError naming the step when the loss or gradient norm is NaN/Inf."""
    values = jax.device_get({k: metrics[k] for k in ("loss", "grad_norm") if k in metrics})
    bad = {k: float(v) for k, v in values.items() if not np.isfinite(v)}
    if bad:
        raise FloatingPointError(f"non-finite training metrics at step {step}: {bad}; stopping (the last good "
                                 f"checkpoint is kept)")
