"""Cap2Mol metrics: hand-computed cases (validity, InChI exact match, count-Morgan, BLEU, Levenshtein, FCD)."""

import math

import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from icma_jax.eval.metrics import cap2mol_metrics
from icma_jax.eval.mol_metrics import fcd_distance, parse_prediction


def test_invalid_smiles_is_counted_and_excluded_from_similarities():
    m = cap2mol_metrics(["CCO", "CCO"], ["CCO", "C1CC"], fcd=False)
    assert m["validity"] == 0.5 and m["n_invalid"] == 1 and m["n"] == 2
    assert m["exact_match"] == 0.5
    assert m["maccs_fts"] == m["rdk_fts"] == m["morgan_fts"] == 1.0  # the one valid row is identical
    assert m["levenshtein"] == (0 + 2) / 2  # "C1CC" -> "CCO": delete "1", last C -> O


def test_levenshtein_on_raw_strings_over_all_rows():
    m = cap2mol_metrics(["CCO", "CCO", "CCCC"], ["CCN", "", "CC(C)C"], fcd=False)
    assert m["levenshtein"] == pytest.approx((1 + 3 + 2) / 3)  # N->O; 3 inserts; insert "(" and ")"


def test_inchi_equal_but_string_different_is_an_exact_match():
    refs = ["CCO", "c1ccccc1", "OC(=O)C"]
    preds = ["OCC", "C1=CC=CC=C1", "CC(O)=O"]
    m = cap2mol_metrics(refs, preds, fcd=False)
    assert m["exact_match"] == 1.0 and m["validity"] == 1.0
    assert m["levenshtein"] > 0


def test_stereo_and_isotope_differences_are_not_matches():
    m = cap2mol_metrics(["C[C@H](N)C(=O)O", "CCO"], ["C[C@@H](N)C(=O)O", "[13CH3]CO"], fcd=False)
    assert m["exact_match"] == 0.0 and m["validity"] == 1.0


def test_empty_prediction_is_invalid_and_never_dropped():
    m = cap2mol_metrics(["CCO", "CCN"], ["CCO", ""], fcd=False)
    assert m["validity"] == 0.5 and m["n_empty"] == 1 and m["n_invalid"] == 1
    assert m["levenshtein"] == 1.5  # "" vs "CCN" = 3
    assert m["maccs_fts"] == 1.0  # averaged over the valid prediction only
    assert parse_prediction("") is None and parse_prediction(" ") is None


def test_inchi_failure_is_no_match_even_for_equal_strings():
    # RDKit makes no InChI for '*' atoms (returns ""); MolT5 compared "" == "" as a match, we do not.
    m = cap2mol_metrics(["*CC", "CCO"], ["*CC", "CCO"], fcd=False)
    assert m["exact_match"] == 0.5 and m["validity"] == 1.0


def test_morgan_similarity_uses_counts_not_bits():
    ref, pred = Chem.MolFromSmiles("CCCCCCO"), Chem.MolFromSmiles("CCCO")
    morgan = rdFingerprintGenerator.GetMorganGenerator(radius=2)
    counts = lambda m: morgan.GetSparseCountFingerprint(m).GetNonzeroElements()  # noqa: E731
    a, b = counts(ref), counts(pred)
    inter = sum(min(a[k], b.get(k, 0)) for k in a)
    by_hand = inter / (sum(a.values()) + sum(b.values()) - inter)
    bits = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    bit_sim = DataStructs.TanimotoSimilarity(bits.GetFingerprint(ref), bits.GetFingerprint(pred))
    m = cap2mol_metrics(["CCCCCCO"], ["CCCO"], fcd=False)
    assert m["morgan_fts"] == pytest.approx(by_hand, abs=1e-12)
    assert abs(by_hand - bit_sim) > 0.05  # the hexyl chain repeats environments: counts and bits disagree


def test_character_bleu_brevity_penalty_by_hand():
    # every n-gram of "CCCC" is in "CCCCCC"; BP = exp(1 - 6/4).
    m = cap2mol_metrics(["CCCCCC"], ["CCCC"], fcd=False)
    assert m["bleu"] == pytest.approx(math.exp(-0.5), abs=1e-12)
    assert m["tokenizer"] == "characters"


def test_no_valid_prediction_leaves_similarities_undefined():
    m = cap2mol_metrics(["CCO"], ["C1CC"], fcd=True)
    assert m["validity"] == 0.0 and m["maccs_fts"] is None and m["fcd"] is None
    assert "at least 2 valid" in m["fcd_note"]
    assert "disabled" in cap2mol_metrics(["CCO"], ["CCO"], fcd=False)["fcd_note"]


@pytest.mark.torch
def test_fcd_of_a_set_with_itself_is_zero():
    fcd = pytest.importorskip("fcd")  # a set against a different one: the golden FCD in test_metrics_regression
    mols = [Chem.MolFromSmiles(s) for s in ("CCO", "c1ccccc1O", "CC(=O)O", "CCN(CC)CC", "C1CCCCC1", "OC(=O)c1ccccc1")]
    same, note = fcd_distance(mols, mols)
    assert same == pytest.approx(0.0, abs=1e-3) and fcd.__version__ in note
