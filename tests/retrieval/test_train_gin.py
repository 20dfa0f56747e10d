"""Encoder training pieces: Tanimoto targets, neighbour batches, the structure term."""

import jax
import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from icma_jax.retrieval import fingerprints
from icma_jax.retrieval.train_gin import (EncoderTrainConfig, batch_order, morgan_neighbours,
                                         neighbour_loss, tanimoto_matrix)

SMILES = ["CCO", "CCCO", "CCCCO", "c1ccccc1O", "c1ccccc1N", "CC(=O)O", "CC(=O)[O-]", "CCN"]


def test_tanimoto_matrix_matches_rdkit():
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in SMILES]
    words = fingerprints.compute(SMILES, "morgan").words_Gx32
    sim = tanimoto_matrix(np.unpackbits(words.view(np.uint8), axis=1, bitorder="little"))
    ref = np.array([DataStructs.BulkTanimotoSimilarity(f, fps) for f in fps])
    np.testing.assert_allclose(sim, ref, atol=1e-6)


def test_neighbour_batches_cover_every_anchor_once_and_are_seeded():
    nbrs = morgan_neighbours(fingerprints.compute(SMILES, "morgan"), 2)
    assert all(i not in n.tolist() and len(n) == 2 for i, n in enumerate(nbrs))
    a = batch_order(len(SMILES), 4, nbrs, np.random.default_rng(0))
    b = batch_order(len(SMILES), 4, nbrs, np.random.default_rng(0))
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert len(a) == 4 and all(len(x) == 4 and len(set(x.tolist())) == 4 for x in a)
    anchors = [i for x in a for i in x[:2].tolist()]
    assert sorted(anchors) == list(range(len(SMILES)))
    plain = batch_order(len(SMILES), 3, None, np.random.default_rng(0))
    assert sorted(np.concatenate(plain).tolist()) == list(range(len(SMILES))) and len(plain) == 3


def test_structure_term_prefers_the_target_geometry_with_finite_gradients():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(6, 4)).astype(np.float32)
    unit = g / np.linalg.norm(g, axis=1, keepdims=True)
    sim = unit @ unit.T
    valid = np.array([True] * 5 + [False])
    aligned = float(neighbour_loss(g, sim, valid, 0.05, 0.05))
    perm = [1, 2, 3, 4, 0, 5]
    assert aligned < float(neighbour_loss(g[perm], sim, valid, 0.05, 0.05))
    grad = jax.grad(lambda x: neighbour_loss(x, sim, valid, 0.1, 0.05))(g[perm])
    assert grad.shape == (6, 4) and np.isfinite(grad).all() and np.abs(grad[:5]).sum() > 0
    np.testing.assert_array_equal(np.asarray(grad[5]), 0.0)  # the padding row gets no gradient


def test_config_refuses_an_empty_objective_and_bad_mix():
    with pytest.raises(ValueError, match="both 0"):
        EncoderTrainConfig(caption_weight=0.0, structure_weight=0.0)
    with pytest.raises(ValueError, match="caption_mix"):
        EncoderTrainConfig(caption_mix=1.5)
    # On by default, so test_graph_knn's training tests (seeded, the loss falls) cover the structure term.
    assert EncoderTrainConfig().structure_weight > 0 and EncoderTrainConfig().neighbours > 0
