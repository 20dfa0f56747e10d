"""Golden regression on 40 ChEBI-20 test rows; predictions = the nearest validation molecule's caption/SMILES.

The numbers were produced by this implementation (CPU, fcd 1.2.2) when it agreed with the MolT5-script
transcription on the full test set (test_metrics_parity.py). The files hold empty, corrupted and
InChI-equal-but-respelled predictions. A change here means the suite now computes something else:
find out why before updating a number.
"""

import pathlib

import pytest
from metrics_support import chebi, write_neighbour_files  # noqa: F401  (fixture)

from icma_jax.eval.metrics import evaluate_predictions, read_predictions

GOLDEN_MOL2CAP = {
    "bleu2": 0.4465443899393904, "bleu4": 0.3400987900264151, "rouge1": 0.516204089019776,
    "rouge2": 0.34598904743839765, "rougeL": 0.44332705536321554, "meteor": 0.47382098783377613,
    "n": 40, "n_empty": 3,
}
GOLDEN_CAP2MOL = {
    "bleu": 0.6815897469585134, "exact_match": 0.125, "levenshtein": 32.5, "validity": 0.875,
    "maccs_fts": 0.7863501406790641, "rdk_fts": 0.6600583288507492, "morgan_fts": 0.5862680090281178,
    "n": 40, "n_invalid": 5, "n_empty": 3, "n_invalid_refs": 0,
}
GOLDEN_FCD = 19.077022968061527


def _check(result: dict, golden: dict) -> None:
    for key, want in golden.items():
        assert result[key] == pytest.approx(want, abs=1e-9), f"{key}: got {result[key]!r}, golden {want!r}"


def test_golden_metrics_on_40_test_rows(chebi, tmp_path: pathlib.Path):
    m2c, c2m = write_neighbour_files(chebi, tmp_path, range(40), empty_every=13)
    mol2cap = evaluate_predictions(read_predictions(m2c))
    _check(mol2cap, GOLDEN_MOL2CAP)
    assert mol2cap["tokenizer"].startswith("scibert")
    cap2mol = evaluate_predictions(read_predictions(c2m), fcd=False)
    _check(cap2mol, GOLDEN_CAP2MOL)


@pytest.mark.torch
def test_golden_fcd_on_40_test_rows(chebi, tmp_path: pathlib.Path):
    pytest.importorskip("fcd")
    _, c2m = write_neighbour_files(chebi, tmp_path, range(40), empty_every=13)
    result = evaluate_predictions(read_predictions(c2m), fcd=True)
    assert result["fcd"] == pytest.approx(GOLDEN_FCD, rel=1e-4), result["fcd_note"]
