"""Our metrics against MolT5's published scripts (transcribed in molt5_reference.py), to 1e-4.

Full size: all 3,300 ChEBI-20 test rows, predictions = the nearest validation molecule's caption /
SMILES, every 10th SMILES corrupted, every 7th the reference respelled (no empty outputs: there our
definitions differ on purpose, pinned separately below).
"""

import pathlib

import pytest
from metrics_support import chebi, write_neighbour_files  # noqa: F401  (fixture)
from molt5_reference import fcd_evaluate, fingerprint_evaluate, mol_evaluate, text_evaluate

from icma_jax.eval import wordpiece
from icma_jax.eval.metrics import evaluate_predictions, read_predictions, write_predictions
from icma_jax.eval.wordnet import load_wordnet

TOL = 1e-4


def _scibert_folder(tmp_path: pathlib.Path) -> str:
    """A local stand-in for the hub repo allenai/scibert_scivocab_uncased (vocab.txt + BERT config)."""
    folder = tmp_path / "scibert"
    folder.mkdir()
    (folder / "vocab.txt").write_bytes(wordpiece.SCIBERT_VOCAB.read_bytes())
    (folder / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    return str(folder)


def _assert_close(ours: dict, reference: dict) -> None:
    for key, want in reference.items():
        assert abs(ours[key] - float(want)) <= TOL, f"{key}: ours {ours[key]!r}, MolT5 scripts {float(want)!r}"


@pytest.mark.slow
def test_full_chebi20_test_set_matches_molt5_scripts(chebi, tmp_path: pathlib.Path):
    m2c, c2m = write_neighbour_files(chebi, tmp_path, range(len(chebi.test_smiles)))
    load_wordnet()  # puts WordNet where nltk.corpus.wordnet (the scripts' default) finds it
    ours = evaluate_predictions(read_predictions(m2c))
    assert ours["n"] == 3300
    keys = ("bleu2", "bleu4", "rouge1", "rouge2", "rougeL", "meteor")
    ref = dict(zip(keys, text_evaluate(_scibert_folder(tmp_path), m2c)))
    _assert_close(ours, ref)

    ours = evaluate_predictions(read_predictions(c2m), fcd=False)
    assert ours["n"] == 3300 and 0 < ours["n_invalid"] < 3300 and ours["exact_match"] > 0
    ref = dict(zip(("bleu", "exact_match", "levenshtein", "validity"), mol_evaluate(c2m)))
    fp = dict(zip(("validity", "maccs_fts", "rdk_fts", "morgan_fts"), fingerprint_evaluate(c2m)))
    assert fp["validity"] == ref["validity"]
    _assert_close(ours, {**ref, **fp})


@pytest.mark.slow
@pytest.mark.torch
def test_fcd_matches_molt5_script_on_160_rows(chebi, tmp_path: pathlib.Path):
    pytest.importorskip("fcd")
    _, c2m = write_neighbour_files(chebi, tmp_path, range(160))  # > 128: the scripts batch by 128, we by 1024
    ours = evaluate_predictions(read_predictions(c2m), fcd=True)
    assert abs(ours["fcd"] - fcd_evaluate(c2m)) <= TOL


def test_documented_differences_from_molt5_scripts(tmp_path: pathlib.Path):
    """Empty output: MolT5 parses "" as a valid empty molecule; InChI failure: MolT5 matched "" == ""."""
    path = tmp_path / "c2m.tsv"
    write_predictions(path, "cap2mol", ["a", "b", "c", "d"], ["CCO", "*CC", "CCN", "CCC"], ["CCO", "*CC", "", "C1C"])
    ours = evaluate_predictions(read_predictions(path), fcd=False)
    bleu, exact, lev, validity = mol_evaluate(path)
    assert (ours["bleu"], ours["levenshtein"]) == (pytest.approx(bleu), pytest.approx(lev))
    assert validity == 3 / 4 and ours["validity"] == 2 / 4  # MolT5: only "C1C" invalid; ours: "" too
    assert exact == 2 / 4 and ours["exact_match"] == 1 / 4  # MolT5 counted the InChI-less "*CC" pair
