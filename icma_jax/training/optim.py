"""AdamW with global-norm clipping and HF Trainer's linear warm-up / linear decay schedule."""

import jax
import jax.numpy as jnp
import optax


def linear_schedule_with_warmup(lr: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
    """HF `get_linear_schedule_with_warmup`: update t (0-based) uses lr·t/warmup, then decays to 0 at total."""
    if warmup_steps < 0 or total_steps < 1:
        raise ValueError(f"schedule needs warmup_steps >= 0 and total_steps >= 1, got {warmup_steps}, {total_steps}")
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) exceeds total_steps ({total_steps})")

    def schedule(count: jax.Array) -> jax.Array:
        t = jnp.asarray(count, jnp.float32)
        warm = t / max(1, warmup_steps)
        decay = jnp.maximum(0.0, (total_steps - t) / max(1, total_steps - warmup_steps))
        return lr * jnp.where(t < warmup_steps, warm, decay)

    return schedule


def _decay_mask(params: optax.Params) -> optax.Params:
    """Weight decay only on matrices (HF leaves biases and norm scales undecayed)."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(
    lr: float,
    warmup_steps: int,
    total_steps: int,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_norm: float | None = 1.0,
) -> optax.GradientTransformation:
    """Global-norm clip then AdamW (torch semantics); the lr used by each update sits in the opt state."""
    adamw = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=linear_schedule_with_warmup(lr, warmup_steps, total_steps),
        b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=_decay_mask,
    )
    if clip_norm is None:
        return adamw
    if clip_norm <= 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm}")
    return optax.chain(optax.clip_by_global_norm(clip_norm), adamw)


def current_lr(opt_state: optax.OptState) -> jax.Array:
    """The learning rate the last update used (NaN when the optimiser does not record one)."""
    hyperparams = optax.tree_utils.tree_get(opt_state, "hyperparams")
    if not isinstance(hyperparams, dict) or "learning_rate" not in hyperparams:
        return jnp.asarray(jnp.nan, jnp.float32)
    return jnp.asarray(hyperparams["learning_rate"], jnp.float32)
