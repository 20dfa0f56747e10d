"""Our own GIN encoder (Mole-BERT's weights are not obtainable): contrastive training on the database
split so that molecules with similar captions get similar graph embeddings.

Captions are embedded once, fixed: LSA (truncated SVD, seeded) of sublinear TF-IDF over the BM25
tokens, lower-cased. The loss is symmetric InfoNCE between the GIN's mean-pooled graph embedding and a
learned linear map of the caption embedding, so the GIN output itself is the retrieval space. An optional
graph-graph term (`structure_weight` > 0) fits each molecule's softmax over the other molecules of the
batch (graph cosine) to the softmax of a target similarity: Morgan Tanimoto mixed with caption cosine
(`caption_mix`). With `neighbours` > 0 half of each batch is one of each anchor's Morgan top-k, so close
analogues meet in a batch (hard negatives for InfoNCE, informative targets for the graph-graph term).
Dims (package legend): G molecules (graphs of a jraph batch: the B real ones, then padding), B batch rows,
D GIN width, R rank of the caption LSA, F fingerprint bits.
"""

import dataclasses
import functools
import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from icma_jax import progress as progress_lib
from icma_jax.data.graphs import batch_graphs, budget_for, featurize_many
from icma_jax.models.gnn import GIN
from icma_jax.retrieval import fingerprints
from icma_jax.retrieval.bm25 import tokenize


@dataclasses.dataclass(frozen=True)
class EncoderTrainConfig:
    """Hyper-parameters of `train_encoder` (defaults: minutes on 2 CPU cores for ~3k molecules)."""

    num_layers: int = 5
    emb_dim: int = 300
    caption_dim: int = 128  # LSA components
    epochs: int = 10
    batch_size: int = 128  # more in-batch negatives; chosen on held-out retrieval (docs/RESULTS.md)
    learning_rate: float = 1e-3
    temperature: float = 0.1
    caption_weight: float = 1.0  # InfoNCE graph <-> caption
    # Graph-graph soft-neighbour term (Tanimoto / caption targets); weight chosen in docs/RESULTS.md
    structure_weight: float = 0.5
    structure_temperature: float = 0.05  # sharpness of those targets
    caption_mix: float = 0.0  # share of caption cosine in the targets (the rest: Morgan Tanimoto)
    neighbours: int = 10  # > 0: half of each batch is anchors, half one of each anchor's Morgan top-k
    drop_ratio: float = 0.0
    atom_extras: bool = True  # ATOM_EXTRAS inputs (charge, H count, ring, ...): a conjugate acid differs from its base
    seed: int = 0

    def __post_init__(self):
        for name in ("num_layers", "emb_dim", "caption_dim", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"train-encoder: {name}={getattr(self, name)} must be >= 1")
        if self.num_layers < 2:
            raise ValueError("train-encoder: num_layers must be >= 2 (as in the original GNN)")
        if self.batch_size < 2:
            raise ValueError("train-encoder: batch_size must be >= 2 (InfoNCE needs negatives)")
        if not (self.learning_rate > 0 and self.temperature > 0 and self.structure_temperature > 0
                and self.caption_weight >= 0 and self.structure_weight >= 0 and 0 <= self.drop_ratio < 1
                and 0 <= self.caption_mix <= 1 and self.neighbours >= 0):
            raise ValueError("train-encoder: learning_rate and temperatures must be > 0, weights >= 0, "
                             "caption_mix in [0, 1], neighbours >= 0, drop_ratio in [0, 1)")
        if self.caption_weight + self.structure_weight == 0:
            raise ValueError("train-encoder: caption_weight and structure_weight are both 0 (nothing to train)")


def caption_embeddings(texts: Sequence[str], dim: int, seed: int = 0) -> np.ndarray:
    """Unit-norm LSA embeddings `GxR` of captions (R = min(dim, rank limit)); deterministic for a seed."""
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for m, text in enumerate(texts):
        counts: dict[int, int] = {}
        for tok in tokenize(text.lower()):
            if tok:
                t = vocab.setdefault(tok, len(vocab))
                counts[t] = counts.get(t, 0) + 1
        for t, c in counts.items():
            rows.append(m)
            cols.append(t)
            vals.append(1.0 + np.log(c))
    tf = sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), max(len(vocab), 1)))
    df = np.bincount(np.asarray(cols, np.int64), minlength=tf.shape[1])
    idf = np.log((1 + len(texts)) / (1 + df)) + 1.0
    x = sp.csr_matrix(tf @ sp.diags(idf))
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x)
    r = max(1, min(dim, min(x.shape) - 1))
    v0 = np.random.default_rng(seed).uniform(-1, 1, size=min(x.shape))
    u, s, _ = svds(x, k=r, v0=v0)
    emb = u * s
    emb *= np.sign(emb.sum(axis=0, keepdims=True) + 1e-30)  # fix the SVD's sign freedom
    emb = emb[:, np.argsort(-s)]
    return (emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class CaptionHead(nn.Module):
    """Linear map of fixed caption embeddings into the GIN's embedding space."""

    emb_dim: int

    @nn.compact
    def __call__(self, cap_BxR: jax.Array) -> jax.Array:
        return nn.Dense(self.emb_dim, name="proj")(cap_BxR)


def _unit(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def info_nce(graph_BxD: jax.Array, cap_BxD: jax.Array, valid_B: jax.Array, temperature: float) -> jax.Array:
    """Symmetric InfoNCE over the valid rows (matching pairs on the diagonal)."""
    logits = _unit(graph_BxD) @ _unit(cap_BxD).T / temperature
    pair_ok = valid_B[:, None] & valid_B[None, :]
    logits = jnp.where(pair_ok, logits, -1e9)
    labels = jnp.arange(logits.shape[0])
    g2c = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    c2g = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels)
    n = jnp.maximum(valid_B.sum(), 1)
    return 0.5 * (jnp.where(valid_B, g2c, 0.0).sum() + jnp.where(valid_B, c2g, 0.0).sum()) / n


def neighbour_loss(graph_BxD: jax.Array, sim_BxB: jax.Array, valid_B: jax.Array, temperature: float,
                   target_temperature: float) -> jax.Array:
    """Graph-graph soft-neighbour cross-entropy: each molecule's graph-cosine softmax over the other
    molecules of the batch should follow the softmax of `sim_BxB` (what retrieval by graph cosine needs)."""
    g = _unit(graph_BxD)
    b = g.shape[0]
    others = valid_B[:, None] & valid_B[None, :] & ~jnp.eye(b, dtype=bool)
    target = jax.nn.softmax(jnp.where(others, sim_BxB / target_temperature, -1e9), axis=-1)
    log_q = jax.nn.log_softmax(jnp.where(others, g @ g.T / temperature, -1e9), axis=-1)
    per_row = -(jnp.where(others, target * log_q, 0.0)).sum(-1)
    rows = valid_B & (others.sum(-1) > 0)
    return jnp.where(rows, per_row, 0.0).sum() / jnp.maximum(rows.sum(), 1)


def tanimoto_matrix(bits_BxF: np.ndarray) -> np.ndarray:
    """All-pairs Tanimoto `BxB` of unpacked 0/1 fingerprints (0 where both are empty)."""
    x = bits_BxF.astype(np.float32)
    common = x @ x.T
    count = x.sum(1)
    union = count[:, None] + count[None, :] - common
    return np.where(union > 0, common / np.maximum(union, 1), 0.0).astype(np.float32)


def morgan_neighbours(fps: fingerprints.FingerprintSet, k: int) -> list[np.ndarray]:
    """Each molecule's `k` Tanimoto-nearest other molecules of the same set (positions)."""
    self_G = [np.array([i]) for i in range(len(fps))]
    rows, _ = fingerprints.topk(fps, fingerprints.build_index(fps), k, excluded=self_G)
    return rows


def batch_order(n: int, bs: int, neighbours: Sequence[np.ndarray] | None, rng: np.random.Generator
                ) -> list[np.ndarray]:
    """One epoch of batches (molecule positions): a permutation cut into `bs`, or, with `neighbours`,
    `bs // 2` anchors each joined by one of its neighbours (distinct molecules, topped up at random)."""
    perm = rng.permutation(n)
    if neighbours is None:
        return [perm[s:s + bs] for s in range(0, n, bs)]
    half = bs // 2
    out = []
    for s in range(0, n, half):
        anchors = perm[s:s + half].tolist()
        picks = [int(rng.choice(neighbours[a])) for a in anchors if len(neighbours[a])]
        idx = list(dict.fromkeys(anchors + picks))
        want = min(bs, n, 2 * len(anchors))
        while len(idx) < want:
            idx = list(dict.fromkeys(idx + rng.integers(0, n, size=want - len(idx)).tolist()))
        out.append(np.asarray(idx[:want], np.int64))
    return out


@functools.partial(jax.jit, static_argnames=("gin", "head", "cfg"), donate_argnums=(0,))
def _train_step(state: dict, graphs, cap_BxR: jax.Array, sim_BxB: jax.Array, valid_B: jax.Array, rng: jax.Array,
                *, gin: GIN, head: CaptionHead, cfg: EncoderTrainConfig):
    """One Adam step; jitted once per (model, config, batch shape) and shared by every `train_encoder` call."""
    tx = optax.adam(cfg.learning_rate)

    def loss_fn(params):
        (_, graph_GxD), updates = gin.apply({"params": params["gin"], "batch_stats": state["batch_stats"]},
                                            graphs, train=True, mutable=["batch_stats"], rngs={"dropout": rng})
        graph_BxD = graph_GxD[: cap_BxR.shape[0]]
        loss = 0.0
        if cfg.caption_weight:
            cap_BxD = head.apply({"params": params["head"]}, cap_BxR)
            loss += cfg.caption_weight * info_nce(graph_BxD, cap_BxD, valid_B, cfg.temperature)
        if cfg.structure_weight:
            loss += cfg.structure_weight * neighbour_loss(graph_BxD, sim_BxB, valid_B, cfg.temperature,
                                                          cfg.structure_temperature)
        return loss, updates["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "batch_stats": stats, "opt_state": opt_state}, loss


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The trained GIN, its variables and the run's record."""

    model: GIN
    variables: dict
    losses: list[float]  # per step
    epoch_losses: list[float]  # mean per (possibly partial) epoch
    n_steps: int
    n_molecules: int
    invalid: list[int]
    seconds: float


def train_encoder(smiles: Sequence[str], texts: Sequence[str], cfg: EncoderTrainConfig,
                  max_steps: int | None = None, progress: bool = True) -> TrainResult:
    """Trains a GIN on (molecule, caption) pairs; invalid SMILES are skipped and listed in `invalid`."""
    t0 = time.perf_counter()
    graphs, invalid = featurize_many(smiles)
    keep = [i for i, g in enumerate(graphs) if g is not None]
    if len(keep) < 2:
        raise ValueError(f"train-encoder: need at least 2 valid molecules, got {len(keep)}")
    caps_GxR = caption_embeddings([texts[i] for i in keep], cfg.caption_dim, cfg.seed)
    mols = [graphs[i] for i in keep]
    fps = fingerprints.compute([smiles[i] for i in keep], "morgan")
    bits_GxF = np.unpackbits(fps.words_Gx32.view(np.uint8), axis=1, bitorder="little")
    nbrs = morgan_neighbours(fps, cfg.neighbours) if cfg.neighbours else None
    gin = GIN(num_layers=cfg.num_layers, emb_dim=cfg.emb_dim, drop_ratio=cfg.drop_ratio,
              atom_extras=cfg.atom_extras)
    head = CaptionHead(cfg.emb_dim)
    init_key, head_key, dropout_key = jax.random.split(jax.random.key(cfg.seed), 3)
    bs = min(cfg.batch_size, len(mols))
    first = batch_graphs(mols[:bs], budget_for(mols[:bs], bs))
    gin_vars = jax.jit(functools.partial(gin.init, train=False))(init_key, first)
    head_params = head.init(head_key, jnp.zeros((1, caps_GxR.shape[1])))["params"]
    params = {"gin": gin_vars["params"], "head": head_params}
    state = {"params": params, "batch_stats": gin_vars["batch_stats"],
             "opt_state": optax.adam(cfg.learning_rate).init(params)}
    step_fn = functools.partial(_train_step, gin=gin, head=head, cfg=cfg)
    order_rng = np.random.default_rng(cfg.seed)
    steps_per_epoch = -(-len(mols) // (bs if nbrs is None else bs // 2))
    total = steps_per_epoch * cfg.epochs if max_steps is None else min(max_steps, steps_per_epoch * cfg.epochs)
    losses: list[float] = []
    bar = progress_lib.Stage("train-encoder", total, unit="step", quiet=not progress)
    step = 0
    pending = None
    while step < total:
        for idx in batch_order(len(mols), bs, nbrs, order_rng):
            if step >= total:
                break
            chunk = [mols[i] for i in idx]
            cap = np.zeros((bs, caps_GxR.shape[1]), np.float32)
            cap[: len(idx)] = caps_GxR[idx]
            sim = np.zeros((bs, bs), np.float32)
            sim[: len(idx), : len(idx)] = ((1 - cfg.caption_mix) * tanimoto_matrix(bits_GxF[idx])
                                           + cfg.caption_mix * caps_GxR[idx] @ caps_GxR[idx].T)
            valid = np.arange(bs) < len(idx)
            state, loss = step_fn(state, batch_graphs(chunk, budget_for(chunk, bs)), jnp.asarray(cap),
                                  jnp.asarray(sim), jnp.asarray(valid), jax.random.fold_in(dropout_key, step))
            if pending is not None:  # read the previous step's loss after dispatching this one
                losses.append(float(pending))
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            pending = loss
            step += 1
            bar.update(1)
    losses.append(float(pending))
    bar.close()
    if not np.isfinite(losses).all():
        raise FloatingPointError("train-encoder: the loss became NaN/inf (try a lower learning rate)")
    variables = {"params": state["params"]["gin"], "batch_stats": state["batch_stats"]}
    epoch_losses = [float(np.mean(losses[i:i + steps_per_epoch])) for i in range(0, len(losses), steps_per_epoch)]
    return TrainResult(model=gin, variables=jax.device_get(variables), losses=losses, epoch_losses=epoch_losses,
                       n_steps=step, n_molecules=len(mols), invalid=list(invalid), seconds=time.perf_counter() - t0)
