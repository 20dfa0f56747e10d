"""TrainState (step, trainable tree, optimiser state) and its sharded creation; the frozen base lives outside."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """What the optimiser owns: the update count, the trainable tree (LoRA or full params) and its moments."""

    step: jax.Array
    trainable: PyTree
    opt_state: optax.OptState


def init_state(trainable: PyTree, optimizer: optax.GradientTransformation) -> TrainState:
    """A fresh state at step 0."""
    return TrainState(step=jnp.zeros((), jnp.int32), trainable=trainable, opt_state=optimizer.init(trainable))


def _mesh_of(trainable_sharding: PyTree) -> Mesh:
    leaves = jax.tree.leaves(trainable_sharding, is_leaf=lambda x: isinstance(x, NamedSharding))
    if not leaves or not isinstance(leaves[0], NamedSharding):
        raise ValueError("trainable_sharding must be a non-empty pytree of NamedSharding")
    return leaves[0].mesh


def state_sharding(
    trainable_sharding: PyTree, optimizer: optax.GradientTransformation, trainable: PyTree
) -> TrainState:
    """Shardings for a TrainState: moments follow their parameter, counters and hyperparameters replicated."""
    replicated = NamedSharding(_mesh_of(trainable_sharding), P())
    abstract_opt = jax.eval_shape(optimizer.init, trainable)
    # tree_map_params runs optimizer.init eagerly on a placeholder to find the param-shaped subtrees; the few
    # scalar counters it creates are thrown away, so their transfer is allowed even under a "disallow" guard
    with jax.transfer_guard("allow"):
        opt_sharding = optax.tree_utils.tree_map_params(
            optimizer,
            lambda _, sharding: sharding,
            abstract_opt,
            trainable_sharding,
            transform_non_params=lambda _: replicated,
        )
    return TrainState(step=replicated, trainable=trainable_sharding, opt_state=opt_sharding)


def create_state(
    trainable: PyTree, optimizer: optax.GradientTransformation, trainable_sharding: PyTree
) -> tuple[TrainState, TrainState]:
    """Build the state directly in its sharding (one jit with out_shardings); returns (state, its sharding)."""
    sharding = state_sharding(trainable_sharding, optimizer, trainable)
    state = jax.jit(lambda t: init_state(t, optimizer), in_shardings=(trainable_sharding,), out_shardings=sharding)(
        trainable
    )
    return state, sharding


def replicated_sharding(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every leaf replicated over the mesh (small trees: LoRA adapters, test models)."""
    return jax.tree.map(lambda _: NamedSharding(mesh, P()), tree)


def count_params(tree: PyTree) -> int:
    """Total number of scalars in a parameter tree."""
    return int(sum(np.prod(np.shape(x), dtype=np.int64) for x in jax.tree.leaves(tree)))
