"""Graph features checked by hand, padding round trip, bucketing, permutation invariance."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rdkit import Chem

from icma_jax._jraph import jraph
from icma_jax.data import graphs as G
from icma_jax.data.molecules import InvalidSmilesError


def test_ethanol():
    g = G.featurize("CCO")
    np.testing.assert_array_equal(g.atom_type_N, [5, 5, 7])  # C, C, O = Z - 1
    np.testing.assert_array_equal(g.chirality_N, [0, 0, 0])
    np.testing.assert_array_equal(g.senders_E, [0, 1, 1, 2])
    np.testing.assert_array_equal(g.receivers_E, [1, 0, 2, 1])
    np.testing.assert_array_equal(g.bond_type_E, [0, 0, 0, 0])
    np.testing.assert_array_equal(g.bond_dir_E, [0, 0, 0, 0])


def test_benzene_bonds_are_aromatic_in_both_kekule_and_aromatic_input():
    for s in ("c1ccccc1", "C1=CC=CC=C1"):
        g = G.featurize(s)
        assert g.n_node == 6 and g.n_edge == 12
        assert set(g.bond_type_E) == {3}


def test_chirality_tags():
    np.testing.assert_array_equal(G.featurize("N[C@@H](C)C(=O)O").chirality_N, [0, 1, 0, 0, 0, 0])  # CW
    np.testing.assert_array_equal(G.featurize("N[C@H](C)C(=O)O").chirality_N, [0, 2, 0, 0, 0, 0])  # CCW


def test_double_bond_directions():
    trans, cis = G.featurize("F/C=C/F"), G.featurize("F/C=C\\F")
    np.testing.assert_array_equal(trans.bond_type_E, [0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(trans.bond_dir_E, [1, 1, 0, 0, 1, 1])  # end-up-right on both
    np.testing.assert_array_equal(cis.bond_dir_E, [1, 1, 0, 0, 2, 2])  # second is end-down-right


def test_charged_salt_with_fragments():
    g = G.featurize("C[N+](C)(C)C.[Cl-]")
    np.testing.assert_array_equal(g.atom_type_N, [5, 6, 5, 5, 5, 16])
    assert g.n_edge == 8 and not np.isin(5, g.senders_E)  # chloride is an isolated node


def _extra(g, name):
    return g.extras_NxF[:, [n for n, _ in G.ATOM_EXTRAS].index(name)]


def test_charge_and_hydrogens_tell_acetic_acid_from_acetate():
    acid, base = G.featurize("CC(=O)O"), G.featurize("CC(=O)[O-]")
    np.testing.assert_array_equal(acid.atom_type_N, base.atom_type_N)  # Mole-BERT's inputs are identical
    np.testing.assert_array_equal(_extra(acid, "charge"), [2, 2, 2, 2])  # formal charge + 2
    np.testing.assert_array_equal(_extra(base, "charge"), [2, 2, 2, 1])
    np.testing.assert_array_equal(_extra(acid, "num_hs"), [3, 0, 0, 1])
    np.testing.assert_array_equal(_extra(base, "num_hs"), [3, 0, 0, 0])
    np.testing.assert_array_equal(_extra(G.featurize("[NH4+]"), "num_hs"), [4])
    np.testing.assert_array_equal(_extra(G.featurize("[CH4]"), "num_hs"), [4])
    np.testing.assert_array_equal(_extra(G.featurize("[O-2]"), "charge"), [0])  # clipped to -2
    np.testing.assert_array_equal(_extra(G.featurize("[Fe+3]"), "charge"), [4])  # clipped to +2


def test_ring_aromatic_degree_and_hybridization_of_phenol_and_acetonitrile():
    phenol, nitrile = G.featurize("c1ccccc1O"), G.featurize("CC#N")
    np.testing.assert_array_equal(_extra(phenol, "aromatic"), [1] * 6 + [0])
    np.testing.assert_array_equal(_extra(phenol, "in_ring"), [1] * 6 + [0])
    np.testing.assert_array_equal(_extra(phenol, "degree"), [2] * 5 + [3, 1])  # heavy neighbours
    np.testing.assert_array_equal(_extra(nitrile, "hybridization"), [3, 1, 1])  # sp3, sp, sp
    np.testing.assert_array_equal(_extra(G.featurize("FS(F)(F)(F)(F)F"), "hybridization"), [3, 4, 3, 3, 3, 3, 3])
    assert all((phenol.extras_NxF[:, k] < size).all() for k, (_, size) in enumerate(G.ATOM_EXTRAS))


def test_isotope_and_dummy_atom():
    g = G.featurize("[125Te]")
    np.testing.assert_array_equal(g.atom_type_N, [51])  # isotopes share the element's type
    assert g.n_edge == 0 and g.senders_E.dtype == np.int32
    np.testing.assert_array_equal(G.featurize("*CC").atom_type_N, [G.MASK_ATOM, 5, 5])


def test_invalid_smiles():
    with pytest.raises(InvalidSmilesError, match="C1CC"):
        G.featurize("C1CC")
    graphs, invalid = G.featurize_many(["CCO", "C1CC", "", "c1ccccc1"])
    assert invalid == [1, 2] and graphs[1] is None and graphs[3].n_node == 6


def test_padding_round_trip():
    smiles = ["CCO", "c1ccccc1", "[125Te]", "C[N+](C)(C)C.[Cl-]", "F/C=C\\F"]
    graphs = [G.featurize(s) for s in smiles]
    budget = G.budget_for(graphs, batch_size=8)
    batch = G.batch_graphs(graphs, budget)
    assert batch.nodes["atom_type"].shape == (budget.n_node,) and batch.senders.shape == (budget.n_edge,)
    assert batch.n_node.shape == (9,) and budget.n_node % 64 == 0
    mask = jraph.get_graph_padding_mask(batch)
    assert mask.sum() == len(graphs)
    for a, b in zip(G.unbatch_graphs(batch), graphs, strict=True):
        for f in ("atom_type_N", "chirality_N", "senders_E", "receivers_E", "bond_type_E", "bond_dir_E", "extras_NxF"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_buckets_bound_the_number_of_shapes(shared_data):
    from icma_jax.data.records import load_split
    smiles = load_split(shared_data / "chebi20/test.txt").smiles
    t0 = time.perf_counter()
    graphs, invalid = G.featurize_many(smiles)
    assert time.perf_counter() - t0 < 60 and invalid == []
    shapes = {(b.nodes["atom_type"].shape, b.senders.shape, b.n_node.shape)
              for _, _, b in G.iterate_batches(graphs, 64)}
    assert len(shapes) <= 4  # so a jitted encoder compiles at most a handful of times


def _readout(batch: jraph.GraphsTuple, table_Vx8: jax.Array) -> jax.Array:
    """A dummy GNN: embed atoms, one sum-aggregation step over edges, mean-pool per graph."""
    h_NxF = table_Vx8[batch.nodes["atom_type"]] + batch.nodes["chirality"][:, None]
    msg_ExF = h_NxF[batch.senders] * (1.0 + batch.edges["bond_type"][:, None])
    h_NxF = h_NxF + jax.ops.segment_sum(msg_ExF, batch.receivers, num_segments=h_NxF.shape[0])
    n_graph = batch.n_node.shape[0]
    gid_N = jnp.repeat(jnp.arange(n_graph), batch.n_node, total_repeat_length=h_NxF.shape[0])
    tot_GxF = jax.ops.segment_sum(h_NxF, gid_N, num_segments=n_graph)
    return tot_GxF / jnp.maximum(batch.n_node, 1)[:, None]


def test_pooled_readout_is_invariant_to_node_order_and_padding():
    rng = np.random.default_rng(0)
    smiles = ["N[C@@H](Cc1ccc(O)cc1)C(=O)O", "F/C=C\\F", "C[N+](C)(C)C.[Cl-]"]
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    perm = [Chem.RenumberAtoms(m, rng.permutation(m.GetNumAtoms()).tolist()) for m in mols]
    table = jnp.asarray(rng.normal(size=(G.NUM_ATOM_TYPES, 8)), jnp.float32)
    readout = jax.jit(_readout)
    a = [G.mol_to_graph(m) for m in mols]
    b = [G.mol_to_graph(m) for m in perm]
    out_a = readout(G.batch_graphs(a, G.GraphBudget(64, 64, 4)), table)[:3]
    out_b = readout(G.batch_graphs(b, G.GraphBudget(64, 64, 4)), table)[:3]
    out_c = readout(G.batch_graphs(a, G.GraphBudget(128, 128, 8)), table)[:3]  # more padding
    np.testing.assert_allclose(out_a, out_b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_a, out_c, rtol=1e-6, atol=1e-6)
    assert not np.allclose(out_a[0], out_a[1])
