"""Device mesh `('data', 'fsdp', 'tensor')` and the one table mapping logical parameter axes onto it."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis (named in model code) -> mesh axes. Batch over data+fsdp; weights FSDP on `embed`, tensor-parallel
# on heads / mlp / vocab; the stacked-layer axis, norms and the LoRA rank stay replicated.
RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("layers", None),
    ("norm", None),
    ("lora_rank", None),
)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: list | None = None) -> Mesh:
    """A 3-axis mesh; one axis may be -1 (= all remaining devices)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = [data, fsdp, tensor]
    if shape.count(-1) > 1:
        raise ValueError(f"make_mesh(data={data}, fsdp={fsdp}, tensor={tensor}): at most one axis may be -1")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if len(devices) % known:
            raise ValueError(f"make_mesh: {len(devices)} devices do not divide by fsdp*tensor*... = {known}")
        shape[shape.index(-1)] = len(devices) // known
    if int(np.prod(shape)) != len(devices):
        raise ValueError(f"make_mesh: data*fsdp*tensor = {int(np.prod(shape))} but there are {len(devices)} devices")
    return Mesh(mesh_utils.create_device_mesh(tuple(shape), devices), MESH_AXES)


def _mesh_spec(logical: PartitionSpec | None, shape: tuple[int, ...], mesh: Mesh, rules) -> PartitionSpec:
    """Logical spec -> mesh spec; a dimension that does not divide evenly over its mesh axes is replicated."""
    if logical is None:
        return PartitionSpec()
    spec = nn.logical_to_mesh_axes(logical, rules)
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
        out.append(axes if names and dim % size == 0 else None)
    return PartitionSpec(*out)


def param_shardings(abstract_params: Any, mesh: Mesh, rules=RULES) -> Any:
    """NamedShardings for a tree of (logically boxed) abstract params; unboxed leaves are replicated."""
    is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)  # noqa: E731

    def one(leaf):
        if is_box(leaf):
            return NamedSharding(mesh, _mesh_spec(PartitionSpec(*leaf.names), leaf.value.shape, mesh, rules))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree.map(one, abstract_params, is_leaf=is_box)
