"""SMILES -> integer graph features of the Hu et al. / Mole-BERT GIN, and padded `jraph` batches.

Features follow `mol_to_graph_data_obj_simple` of pretrain-gnns: atom type = atomic number − 1
(118 elements, index 119 is the mask token), chirality tag ∈ {unspecified, CW, CCW}; bond type ∈
{single, double, triple, aromatic} (4 = self-loop, added by the GIN; 5 = mask), bond direction ∈
{none, end-up-right, end-down-right}; each bond appears once per direction. Where the original would
crash (dummy atom `*`, a chirality or bond type outside its lists) we map to the mask/none index.
`extras_NxF` holds further atom inputs (`ATOM_EXTRAS`) that only our own encoders use.
Dims (package legend): N nodes (atoms), E directed edges, G graphs, F feature columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from rdkit import Chem

from icma_jax._jraph import jraph
from icma_jax.data.molecules import parse_smiles, try_parse
from icma_jax.progress import track

NUM_ATOM_TYPES = 120  # atomic numbers 1..118 -> 0..117, 118 unused, 119 = mask
MASK_ATOM = 119
NUM_CHIRALITY = 3
NUM_BOND_TYPES = 6  # single, double, triple, aromatic, self-loop, mask
SELF_LOOP_BOND = 4
MASK_BOND = 5
NUM_BOND_DIRS = 3
# Extra atom inputs of our own encoders only (`GIN(atom_extras=True)`; Mole-BERT has none): name, vocabulary.
# charge: formal charge clipped to [-2, 2], + 2; num_hs: total H count clipped to 4; degree: heavy
# neighbours clipped to 5; hybridization: other, sp, sp2, sp3, sp3d(2).
ATOM_EXTRAS = (("charge", 5), ("num_hs", 5), ("aromatic", 2), ("in_ring", 2), ("degree", 6), ("hybridization", 5))

_CHIRALITY = np.zeros(len(Chem.rdchem.ChiralType.values), np.int32)
_CHIRALITY[int(Chem.rdchem.ChiralType.CHI_TETRAHEDRAL_CW)] = 1
_CHIRALITY[int(Chem.rdchem.ChiralType.CHI_TETRAHEDRAL_CCW)] = 2
_BOND_TYPE = np.full(len(Chem.rdchem.BondType.values), MASK_BOND, np.int32)
for _i, _t in enumerate(("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")):
    _BOND_TYPE[int(getattr(Chem.rdchem.BondType, _t))] = _i
_BOND_DIR = np.zeros(len(Chem.rdchem.BondDir.values), np.int32)
_BOND_DIR[int(Chem.rdchem.BondDir.ENDUPRIGHT)] = 1
_BOND_DIR[int(Chem.rdchem.BondDir.ENDDOWNRIGHT)] = 2
_HYBRID = {Chem.rdchem.HybridizationType.SP: 1, Chem.rdchem.HybridizationType.SP2: 2,
           Chem.rdchem.HybridizationType.SP3: 3, Chem.rdchem.HybridizationType.SP3D: 4,
           Chem.rdchem.HybridizationType.SP3D2: 4}


@dataclasses.dataclass(frozen=True)
class MolGraph:
    """Integer features of one molecule; edges hold both directions of every bond, no self-loops."""

    atom_type_N: np.ndarray
    chirality_N: np.ndarray
    senders_E: np.ndarray
    receivers_E: np.ndarray
    bond_type_E: np.ndarray
    bond_dir_E: np.ndarray
    extras_NxF: np.ndarray  # columns as in ATOM_EXTRAS

    @property
    def n_node(self) -> int:
        return len(self.atom_type_N)

    @property
    def n_edge(self) -> int:
        return len(self.senders_E)


def mol_to_graph(mol: Chem.Mol) -> MolGraph:
    atoms = mol.GetAtoms()
    z = np.fromiter((a.GetAtomicNum() for a in atoms), np.int32, count=mol.GetNumAtoms())
    chiral = np.fromiter((int(a.GetChiralTag()) for a in atoms), np.int32, count=mol.GetNumAtoms())
    atom_type = np.where((z >= 1) & (z <= 118), z - 1, MASK_ATOM).astype(np.int32)
    extras = np.array([(min(max(a.GetFormalCharge(), -2), 2) + 2, min(a.GetTotalNumHs(), 4), int(a.GetIsAromatic()),
                        int(a.IsInRing()), min(a.GetDegree(), 5), _HYBRID.get(a.GetHybridization(), 0))
                       for a in atoms], np.int32).reshape(mol.GetNumAtoms(), len(ATOM_EXTRAS))
    nb = mol.GetNumBonds()
    bond = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), int(b.GetBondType()), int(b.GetBondDir()))
                     for b in mol.GetBonds()], np.int32).reshape(nb, 4)
    i, j = bond[:, 0], bond[:, 1]
    # Interleaved (i->j, j->i) per bond, as pretrain-gnns orders them.
    senders = np.stack([i, j], 1).reshape(-1)
    receivers = np.stack([j, i], 1).reshape(-1)
    return MolGraph(atom_type_N=atom_type, chirality_N=_CHIRALITY[chiral],
                    senders_E=senders, receivers_E=receivers,
                    bond_type_E=np.repeat(_BOND_TYPE[bond[:, 2]], 2),
                    bond_dir_E=np.repeat(_BOND_DIR[bond[:, 3]], 2), extras_NxF=extras)


def featurize(smiles: str) -> MolGraph:
    """One molecule's graph; raises `InvalidSmilesError` naming the SMILES."""
    return mol_to_graph(parse_smiles(smiles))


def featurize_many(smiles: Sequence[str]) -> tuple[list[MolGraph | None], list[int]]:
    """Graphs for every SMILES (None where it does not parse) and the indices of the invalid ones."""
    graphs, invalid = [], []
    for k, s in enumerate(track(smiles, "featurisation: molecular graphs", unit="mol")):
        mol = try_parse(s)
        if mol is None or mol.GetNumAtoms() == 0:
            invalid.append(k)
            graphs.append(None)
        else:
            graphs.append(mol_to_graph(mol))
    return graphs, invalid


@dataclasses.dataclass(frozen=True)
class GraphBudget:
    """Static padded sizes of a batch (the last graph is the padding graph)."""

    n_node: int
    n_edge: int
    n_graph: int


def _bucket(n: int, base: int = 64) -> int:
    """Smallest base·2^k >= n: a few shapes cover every batch, so the encoder compiles a few times."""
    size = base
    while size < n:
        size *= 2
    return size


def budget_for(graphs: Sequence[MolGraph], batch_size: int | None = None) -> GraphBudget:
    """A bucketed budget that fits `graphs` plus one padding node and one padding graph."""
    n_graph = (batch_size or len(graphs)) + 1
    nodes = sum(g.n_node for g in graphs) + 1
    edges = sum(g.n_edge for g in graphs)
    return GraphBudget(n_node=_bucket(nodes), n_edge=_bucket(max(edges, 1)), n_graph=n_graph)


def batch_graphs(graphs: Sequence[MolGraph], budget: GraphBudget | None = None) -> jraph.GraphsTuple:
    """Concatenates graphs into one NumPy `GraphsTuple` padded to `budget` with `jraph.pad_with_graphs`."""
    budget = budget or budget_for(graphs)
    n_node = np.array([g.n_node for g in graphs], np.int32)
    n_edge = np.array([g.n_edge for g in graphs], np.int32)
    offsets = np.repeat(np.concatenate([[0], np.cumsum(n_node)[:-1]]).astype(np.int32), n_edge)
    cat = lambda name: np.concatenate([getattr(g, name) for g in graphs]).astype(np.int32)  # noqa: E731
    batch = jraph.GraphsTuple(
        nodes={"atom_type": cat("atom_type_N"), "chirality": cat("chirality_N"), "extras": cat("extras_NxF")},
        edges={"bond_type": cat("bond_type_E"), "bond_dir": cat("bond_dir_E")},
        senders=cat("senders_E") + offsets, receivers=cat("receivers_E") + offsets,
        n_node=n_node, n_edge=n_edge, globals=None)
    return jraph.pad_with_graphs(batch, budget.n_node, budget.n_edge, budget.n_graph)


def unbatch_graphs(batch: jraph.GraphsTuple) -> list[MolGraph]:
    """Inverse of `batch_graphs`: drops the padding and splits back into per-molecule graphs."""
    i32 = lambda x: np.asarray(x, np.int32)  # noqa: E731
    return [MolGraph(atom_type_N=i32(g.nodes["atom_type"]), chirality_N=i32(g.nodes["chirality"]),
                     senders_E=i32(g.senders), receivers_E=i32(g.receivers),
                     bond_type_E=i32(g.edges["bond_type"]), bond_dir_E=i32(g.edges["bond_dir"]),
                     extras_NxF=i32(g.nodes["extras"]))
            for g in jraph.unbatch_np(jraph.unpad_with_graphs(batch))]


def iterate_batches(graphs: Sequence[MolGraph], batch_size: int):
    """Yields `(start, count, padded GraphsTuple)` over `graphs` in order, every batch with
    `batch_size + 1` graph slots and bucketed node/edge budgets."""
    for start in range(0, len(graphs), batch_size):
        chunk = graphs[start:start + batch_size]
        yield start, len(chunk), batch_graphs(chunk, budget_for(chunk, batch_size))
