"""Orbax checkpoints (args API): TrainState + RNG as arrays, the data-iterator position as JSON; async, keep-N."""

import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from icma_jax.training.state import TrainState

PyTree = Any


def abstract_state(state_or_shapes: PyTree, sharding: PyTree) -> PyTree:
    """ShapeDtypeStructs carrying the target shardings: the restore target (from a state or `jax.eval_shape`)."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state_or_shapes, sharding)


def _key_parts(rng: jax.Array) -> tuple[jax.Array, str | None]:
    """(uint32 key data, impl name or None for a raw uint32 key)."""
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(rng), str(jax.random.key_impl(rng))
    return rng, None


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager`: `<directory>/<step>/{state,data}`."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = 3, async_save: bool = True):
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: TrainState, rng: jax.Array, data: dict, force: bool = False) -> bool:
        """Start an async save of state, RNG and the JSON-able data position; returns whether it saved."""
        key_data, impl = _key_parts(rng)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave({"train": state, "rng": key_data}),
            data=ocp.args.JsonSave({"iterator": data, "rng_impl": impl}),
        )
        return self._manager.save(int(step), args=args, force=force)

    def restore(self, abstract: TrainState, step: int | None = None) -> tuple[TrainState, jax.Array, dict]:
        """Restore (state, rng, data) at `step` (default: latest) into the abstract sharded target."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint to restore in {self.directory}")
        meta = self._manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"]
        target = {"train": abstract, "rng": self._rng_target(abstract, meta["rng_impl"])}
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore())
        )
        rng = restored["state"]["rng"]
        if meta["rng_impl"] is not None:
            rng = jax.random.wrap_key_data(rng, impl=meta["rng_impl"])
        return restored["state"]["train"], rng, restored["data"]["iterator"]

    def _rng_target(self, abstract: TrainState, impl: str | None) -> jax.ShapeDtypeStruct:
        shape = jax.random.key_data(jax.random.key(0, impl=impl)).shape if impl else (2,)
        step_sharding = getattr(abstract.step, "sharding", None)
        if isinstance(step_sharding, jax.sharding.NamedSharding):
            step_sharding = jax.sharding.NamedSharding(step_sharding.mesh, jax.sharding.PartitionSpec())
        return jax.ShapeDtypeStruct(shape, jnp.uint32, sharding=step_sharding)

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the checkpoints kept on disk."""
        return list(self._manager.all_steps())

    def wait_until_finished(self) -> None:
        """Block until pending async saves are on disk (call before exit)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release the manager."""
        self._manager.close()
