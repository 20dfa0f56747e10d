"""Fingerprint Tanimoto parity with RDKit (to 1e-12; in fact exact), folding, invalid SMILES, top-k order."""

import warnings

import numpy as np
import pytest
from rdkit import Chem, DataStructs

from icma_jax.retrieval import fingerprints as F

SMILES = ["C", "CCO", "c1ccccc1CCCCN(C)C(=O)O", "CC(=O)Oc1ccccc1C(=O)O", "O=C=O", "CCCCCCCCCCCCCCCC(=O)O",
          "C1CCC2(CC1)OCCO2", "N[C@@H](C)C(=O)O", "[Na+].[Cl-]", "CCN(CC)CC"]


def _rdkit_matrix(qs, ds, method):
    qf = [F.rdkit_fingerprint(Chem.MolFromSmiles(s), method) for s in qs]
    df = [F.rdkit_fingerprint(Chem.MolFromSmiles(s), method) for s in ds]
    return np.array([[DataStructs.FingerprintSimilarity(a, b) for b in df] for a in qf])


def test_pathfp_is_the_originals_fingerprintmol():
    from rdkit.Chem.Fingerprints import FingerprintMols  # the original's call (module is deprecated)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in SMILES:
            mol = Chem.MolFromSmiles(s)
            assert F.rdkit_fingerprint(mol, "pathfp") == FingerprintMols.FingerprintMol(mol)


@pytest.mark.parametrize("method", F.METHODS)
def test_tanimoto_equals_rdkit_on_toy_set(method):
    fps = F.compute(SMILES, method)
    if method == "pathfp":
        assert len(set(fps.n_bits_G.tolist())) > 1  # several folded lengths are really exercised
    sims = F.tanimoto(fps, F.build_index(fps))
    np.testing.assert_allclose(sims, _rdkit_matrix(SMILES, SMILES, method), rtol=0, atol=1e-12)


def test_fold_matches_rdkit():
    fp = F.rdkit_fingerprint(Chem.MolFromSmiles("c1ccccc1CCCCN(C)C(=O)O"), "morgan")
    words = F._pack(fp)[None]
    for to in (1024, 256, 64):
        folded = DataStructs.FoldFingerprint(fp, 2048 // to)
        got = np.flatnonzero(F._unpack(F.fold_words(words, 2048, to))[0])
        assert got.tolist() == list(folded.GetOnBits())


@pytest.mark.slow
@pytest.mark.parametrize("method", F.METHODS)
def test_chebi_topk_parity(chebi, method):
    validation, test = chebi
    db, picks = validation.select(range(0, len(validation), 10)), list(range(0, len(test), 550))
    queries = [test.smiles[i] for i in picks]
    index = F.build_index(F.compute(db.smiles, method))
    rows, scores = F.topk(F.compute(queries, method), index, k=10, batch_size=4)
    ref = _rdkit_matrix(queries, db.smiles, method)
    for j in range(len(picks)):
        order = np.argsort(-ref[j], kind="stable")[:10]
        np.testing.assert_array_equal(rows[j], order)
        np.testing.assert_allclose(scores[j], ref[j][order], rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", F.METHODS)
def test_invalid_smiles_are_counted_and_get_no_neighbours(method):
    db = F.compute(SMILES + ["not a smiles"], method)
    queries = F.compute(["CCO", "C1CC", "CCN"], method)
    assert db.invalid == (len(SMILES),) and queries.invalid == (1,)
    rows, scores = F.topk(queries, F.build_index(db), k=20, excluded=[np.array([1]), np.array([]), np.array([])])
    assert len(rows[1]) == 0  # the invalid query
    assert len(SMILES) not in np.concatenate(rows)  # the invalid database row is never returned
    assert 1 not in rows[0] and len(rows[0]) == len(SMILES) - 1
    ref = _rdkit_matrix(["CCN"], SMILES, method)[0]  # the query after the invalid one keeps its own ranking
    assert rows[2][0] == int(np.argmax(ref))
    np.testing.assert_allclose(scores[2], np.sort(ref)[::-1][: len(scores[2])], rtol=0, atol=1e-12)


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="not one of"):
        F.compute(["C"], "ecfp")


def test_pathfp_lengths_missing_on_one_side():
    # Query lengths (64, 128 bits ...) that no database fingerprint has, and the reverse.
    db_smiles = ["CCCCCCCCCCCCCCCC(=O)O", "c1ccccc1CCCCN(C)C(=O)O"]
    q_smiles = ["C", "CCO", "O=C=O", "CC(=O)Oc1ccccc1C(=O)O"]
    db, qs = F.compute(db_smiles, "pathfp"), F.compute(q_smiles, "pathfp")
    assert not set(qs.n_bits_G.tolist()) <= set(db.n_bits_G.tolist())
    index = F.build_index(db)
    np.testing.assert_allclose(F.tanimoto(qs, index), _rdkit_matrix(q_smiles, db_smiles, "pathfp"), rtol=0, atol=1e-12)
    rows, _ = F.topk(qs, index, k=5)
    assert all(len(r) == 2 for r in rows)
    back = F.tanimoto(db, F.build_index(qs))
    np.testing.assert_allclose(back, _rdkit_matrix(db_smiles, q_smiles, "pathfp"), rtol=0, atol=1e-12)
