"""The one place jraph is imported: jraph 0.0.6.dev0 still calls `jax.tree_map`/`jax.tree_leaves`,
which current jax removed; we alias them to `jax.tree.*` before importing it."""

import jax

for _name, _fn in (("tree_map", jax.tree.map), ("tree_leaves", jax.tree.leaves),
                   ("tree_flatten", jax.tree.flatten), ("tree_unflatten", jax.tree.unflatten),
                   ("tree_structure", jax.tree.structure)):
    if not hasattr(jax, _name):
        setattr(jax, _name, _fn)

import jraph  # noqa: E402

__all__ = ["jraph"]
