"""Graph retrieval: GIN embeddings of molecules, cosine top-k in JAX (`lax.top_k`, chunked).

Dims (package legend): G molecules (database rows), D embedding width, Q queries.
"""

import functools
import json
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from icma_jax.data.graphs import featurize_many, iterate_batches
from icma_jax.models.gnn import GIN, load_torch_gin
from icma_jax.progress import Stage

ENCODER_META = "encoder.json"  # next to an Orbax encoder checkpoint: the GIN's shape


@functools.partial(jax.jit, static_argnums=0)
def _embed_batch(model: GIN, variables: dict, graphs) -> jax.Array:
    return model.apply(variables, graphs, train=False)[1]


def embed_smiles(model: GIN, variables: dict, smiles: Sequence[str], batch_size: int = 128,
                 progress: bool = True) -> tuple[np.ndarray, list[int]]:
    """Mean-pooled GIN embeddings `GxD` (zeros for invalid SMILES) and the invalid indices.

    Batches are padded to bucketed sizes, so the encoder compiles once per bucket, not per batch.
    """
    graphs, invalid = featurize_many(smiles)
    valid = [i for i, g in enumerate(graphs) if g is not None]
    out_GxD = np.zeros((len(smiles), model.emb_dim), np.float32)
    bar = Stage("retrieval: GIN embeddings", total=len(valid), unit="mol", quiet=not progress)
    for start, count, batch in iterate_batches([graphs[i] for i in valid], batch_size):
        emb = np.asarray(_embed_batch(model, variables, batch))
        out_GxD[valid[start:start + count]] = emb[:count]
        bar.update(count)
    bar.close()
    return out_GxD, invalid


@functools.partial(jax.jit, static_argnums=2)
def _cosine_topk_chunk(q_QxD: jax.Array, db_unit_GxD: jax.Array, k: int, banned_QxG: jax.Array
                       ) -> tuple[jax.Array, jax.Array]:
    q_unit = q_QxD / jnp.maximum(jnp.linalg.norm(q_QxD, axis=-1, keepdims=True), 1e-12)
    sims_QxG = jnp.dot(q_unit, db_unit_GxD.T, precision=jax.lax.Precision.HIGHEST)
    sims_QxG = jnp.where(banned_QxG, -jnp.inf, sims_QxG)
    return jax.lax.top_k(sims_QxG, k)  # ties: the lower index first


def cosine_topk(q_QxD: np.ndarray, db_GxD: np.ndarray, k: int, excluded: Sequence[np.ndarray] | None = None,
                invalid_queries: Sequence[int] = (), invalid_database: Sequence[int] = (), chunk: int = 256
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each query's `k` most cosine-similar database rows; excluded and invalid rows never appear,
    invalid queries get none."""
    n_q, n_b = len(q_QxD), len(db_GxD)
    kk = min(k, n_b)
    db = np.asarray(db_GxD, np.float32)
    db_unit = jnp.asarray(db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12))
    bad_db = np.zeros(n_b, bool)
    bad_db[list(invalid_database)] = True
    bad_q = set(int(i) for i in invalid_queries)
    rows: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for start in range(0, n_q, chunk):
        stop = min(start + chunk, n_q)
        banned = np.broadcast_to(bad_db, (chunk, n_b)).copy()  # fixed chunk shape: one compile
        q = np.zeros((chunk, db.shape[1]), np.float32)
        q[: stop - start] = q_QxD[start:stop]
        if excluded is not None:
            for i in range(start, stop):
                banned[i - start, np.asarray(excluded[i], dtype=np.int64)] = True
        s, r = (np.asarray(x) for x in _cosine_topk_chunk(jnp.asarray(q), db_unit, kk, jnp.asarray(banned)))
        for i in range(start, stop):
            keep = np.isfinite(s[i - start]) & (i not in bad_q)
            rows.append(r[i - start][keep].astype(np.int64))
            scores.append(s[i - start][keep].astype(np.float64))
    return rows, scores


def save_encoder(directory: str | pathlib.Path, model: GIN, variables: dict, step: int, meta: dict) -> pathlib.Path:
    """Orbax checkpoint of `{"params", "batch_stats"}` under DIR/<step>, the GIN shape in DIR/encoder.json."""
    directory = pathlib.Path(directory).absolute()
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True)) as mngr:
        mngr.save(step, args=ocp.args.StandardSave(variables))
        mngr.wait_until_finished()
    info = {"num_layers": model.num_layers, "emb_dim": model.emb_dim, "atom_extras": model.atom_extras, **meta}
    (directory / ENCODER_META).write_text(json.dumps(info, indent=1))
    return directory


def load_encoder(path: str | pathlib.Path) -> tuple[GIN, dict, list[str]]:
    """A GIN, its variables and the ignored state_dict keys, from our Orbax checkpoint folder or a
    PyTorch state_dict file (.pth/.pt/.bin, Mole-BERT / Hu et al. 5 x 300 layout)."""
    path = pathlib.Path(path)
    if path.is_file() and path.suffix in (".pth", ".pt", ".bin"):
        variables, ignored = load_torch_gin(path)
        return GIN(), variables, ignored
    meta_path = path / ENCODER_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: not an encoder checkpoint (no {ENCODER_META}) nor a .pth state_dict")
    meta = json.loads(meta_path.read_text())
    model = GIN(num_layers=int(meta["num_layers"]), emb_dim=int(meta["emb_dim"]),
                atom_extras=bool(meta.get("atom_extras", False)))
    from icma_jax.data.graphs import batch_graphs, featurize  # noqa: PLC0415

    abstract = jax.eval_shape(lambda g: model.init(jax.random.key(0), g, train=False), batch_graphs([featurize("CC")]))
    with ocp.CheckpointManager(path.absolute()) as mngr:
        step = mngr.latest_step()
        if step is None:
            raise FileNotFoundError(f"{path}: no finished checkpoint step inside")
        variables = mngr.restore(step, args=ocp.args.StandardRestore(dict(abstract)))
    return model, dict(variables), []
