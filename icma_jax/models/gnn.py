"""The Mole-BERT / Hu et al. (2019) GIN in Flax + Jraph, and its PyTorch `state_dict` importer.

Node input = emb(atom type) + emb(chirality), plus with `atom_extras=True` (our own encoders only) one
embedding per `ATOM_EXTRAS` column: charge, H count, aromatic, ring, degree, hybridisation. Each of
the layers adds self-loops (bond type 4), messages h_j + emb(bond type) + emb(bond direction), sum
aggregation at the receiver, MLP D->2D->D, BatchNorm (running statistics in `batch_stats`), ReLU +
dropout except after the last layer; JK=last; graph embedding = mean over the graph's nodes.
Parameter names follow the PyTorch `GNN` class.
Dims (package legend): N nodes, E edges, G graphs, D width.
"""

import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from icma_jax._jraph import jraph
from icma_jax.data.graphs import (ATOM_EXTRAS, NUM_ATOM_TYPES, NUM_BOND_DIRS, NUM_BOND_TYPES, NUM_CHIRALITY,
                                  SELF_LOOP_BOND)

_xavier = nn.initializers.xavier_uniform()


class GINConv(nn.Module):
    """One GIN layer with edge features (pretrain-gnns `GINConv`, aggr='add')."""

    emb_dim: int

    @nn.compact
    def __call__(self, h_NxD: jax.Array, senders_E: jax.Array, receivers_E: jax.Array,
                 bond_type_E: jax.Array, bond_dir_E: jax.Array) -> jax.Array:
        n = h_NxD.shape[0]
        loops_N = jnp.arange(n, dtype=jnp.int32)
        send = jnp.concatenate([senders_E.astype(jnp.int32), loops_N])
        recv = jnp.concatenate([receivers_E.astype(jnp.int32), loops_N])
        btype = jnp.concatenate([bond_type_E.astype(jnp.int32), jnp.full((n,), SELF_LOOP_BOND, jnp.int32)])
        bdir = jnp.concatenate([bond_dir_E.astype(jnp.int32), jnp.zeros((n,), jnp.int32)])
        edge_ExD = (nn.Embed(NUM_BOND_TYPES, self.emb_dim, embedding_init=_xavier, name="edge_embedding1")(btype)
                    + nn.Embed(NUM_BOND_DIRS, self.emb_dim, embedding_init=_xavier, name="edge_embedding2")(bdir))
        agg_NxD = jax.ops.segment_sum(h_NxD[send] + edge_ExD, recv, num_segments=n)
        x = nn.Dense(2 * self.emb_dim, name="mlp_0")(agg_NxD)
        return nn.Dense(self.emb_dim, name="mlp_2")(nn.relu(x))


class GIN(nn.Module):
    """Node and mean-pooled graph embeddings of a padded `jraph.GraphsTuple` (last graph = padding)."""

    num_layers: int = 5
    emb_dim: int = 300
    drop_ratio: float = 0.0
    atom_extras: bool = False  # + one embedding per ATOM_EXTRAS column: our own encoders; Mole-BERT has none

    @nn.compact
    def __call__(self, graphs: jraph.GraphsTuple, train: bool = False) -> tuple[jax.Array, jax.Array]:
        node_mask_N = jraph.get_node_padding_mask(graphs)
        atom = nn.Embed(NUM_ATOM_TYPES, self.emb_dim, embedding_init=_xavier, name="x_embedding1")
        chirality = nn.Embed(NUM_CHIRALITY, self.emb_dim, embedding_init=_xavier, name="x_embedding2")
        h = atom(graphs.nodes["atom_type"]) + chirality(graphs.nodes["chirality"])
        if self.atom_extras:  # charge and H count alone tell conjugate acids from bases, which Mole-BERT cannot
            for k, (name, size) in enumerate(ATOM_EXTRAS):
                embed = nn.Embed(size, self.emb_dim, embedding_init=_xavier, name=f"x_{name}")
                h += embed(graphs.nodes["extras"][:, k])
        for layer in range(self.num_layers):
            h = GINConv(self.emb_dim, name=f"gnns_{layer}")(h, graphs.senders, graphs.receivers,
                                                            graphs.edges["bond_type"], graphs.edges["bond_dir"])
            # Statistics over real nodes only, so padding never changes a real embedding.
            h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             name=f"batch_norms_{layer}")(h, mask=node_mask_N[:, None])
            if layer < self.num_layers - 1:
                h = nn.relu(h)
            h = nn.Dropout(self.drop_ratio, deterministic=not train)(h)
        n_graph = graphs.n_node.shape[0]
        graph_idx_N = jnp.repeat(jnp.arange(n_graph), graphs.n_node, total_repeat_length=h.shape[0])
        sums_GxD = jax.ops.segment_sum(h, graph_idx_N, num_segments=n_graph)
        graph_GxD = sums_GxD / jnp.maximum(graphs.n_node, 1).astype(h.dtype)[:, None]
        return h, graph_GxD


def init_variables(model: GIN, graphs: jraph.GraphsTuple, seed: int = 0) -> dict:
    """Fresh `{"params", "batch_stats"}` for `model` (shapes from any padded batch)."""
    return dict(jax.jit(lambda key, g: model.init(key, g, train=False))(jax.random.key(seed), graphs))


# ---- PyTorch state_dict import (Hu et al. / Mole-BERT key names) ----
_PREFIXES = ("module.", "gnn.", "model.", "encoder.")


def _torch_state_dict(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        import torch  # noqa: PLC0415  (only needed to read the file)
    except ImportError:
        raise RuntimeError(f"{path}: reading a PyTorch state_dict needs torch: pip install 'icma-jax[torch]'") from None

    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, "detach")}


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def variables_from_state_dict(state: dict[str, np.ndarray], num_layers: int, emb_dim: int, where: str = "state_dict"
                              ) -> tuple[dict, list[str]]:
    """Flax variables from a Hu et al. `GNN` state_dict; returns them and the ignored (non-GNN) keys.

    Every GNN tensor must be present with the right shape; the error names the missing or bad key.
    """
    sd = {_strip(k): v for k, v in state.items()}
    used: set[str] = set()

    def take(key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in sd:
            raise ValueError(f"{where}: missing key {key!r} (expected a pretrain-gnns/Mole-BERT GNN state_dict)")
        v = np.asarray(sd[key], np.float32)
        if v.shape != shape:
            raise ValueError(f"{where}: key {key!r} has shape {v.shape}, expected {shape}")
        used.add(key)
        return v

    d = emb_dim
    params: dict = {"x_embedding1": {"embedding": take("x_embedding1.weight", (NUM_ATOM_TYPES, d))},
                    "x_embedding2": {"embedding": take("x_embedding2.weight", (NUM_CHIRALITY, d))}}
    stats: dict = {}
    for i in range(num_layers):
        g = f"gnns.{i}."
        params[f"gnns_{i}"] = {
            "edge_embedding1": {"embedding": take(g + "edge_embedding1.weight", (NUM_BOND_TYPES, d))},
            "edge_embedding2": {"embedding": take(g + "edge_embedding2.weight", (NUM_BOND_DIRS, d))},
            "mlp_0": {"kernel": take(g + "mlp.0.weight", (2 * d, d)).T, "bias": take(g + "mlp.0.bias", (2 * d,))},
            "mlp_2": {"kernel": take(g + "mlp.2.weight", (d, 2 * d)).T, "bias": take(g + "mlp.2.bias", (d,))}}
        b = f"batch_norms.{i}."
        params[f"batch_norms_{i}"] = {"scale": take(b + "weight", (d,)), "bias": take(b + "bias", (d,))}
        stats[f"batch_norms_{i}"] = {"mean": take(b + "running_mean", (d,)), "var": take(b + "running_var", (d,))}
        used.add(b + "num_batches_tracked")
    layers_in_file = {int(m.group(1)) for k in sd if (m := re.match(r"gnns\.(\d+)\.", k))}
    extra_layers = sorted(layers_in_file - set(range(num_layers)))
    if extra_layers:
        raise ValueError(f"{where}: has GIN layers {extra_layers} beyond num_layers={num_layers}")
    ignored = sorted(k for k in sd if k not in used)
    return {"params": params, "batch_stats": stats}, ignored


def load_torch_gin(path: str | pathlib.Path, num_layers: int = 5, emb_dim: int = 300) -> tuple[dict, list[str]]:
    """Reads a PyTorch GIN `state_dict` file safely (`weights_only=True`) into Flax variables."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such encoder file")
    return variables_from_state_dict(_torch_state_dict(path), num_layers, emb_dim, where=str(path))
