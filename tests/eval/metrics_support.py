"""Shared by the metric tests: ChEBI-20 rows, nearest-validation-molecule "predictions" and their files."""

import csv
import dataclasses
import functools
import pathlib

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from icma_jax.eval.mol_metrics import quiet_rdkit


@dataclasses.dataclass(frozen=True)
class Chebi:
    """ChEBI-20 test rows with, per row, the most similar validation molecule (Morgan bits, Tanimoto)."""

    test_smiles: list[str]
    test_texts: list[str]
    val_smiles: list[str]
    val_texts: list[str]
    neighbour: np.ndarray  # [n_test] index into validation


def _rows(path: pathlib.Path) -> list[list[str]]:
    """Data rows of a ChEBI-20 TSV (header skipped)."""
    with open(path, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [row for row in reader]


def corrupt(smiles: str, row: int) -> str:
    """A deterministic damaged SMILES (unclosed ring/branch or truncation; some still parse)."""
    return (smiles + "1", smiles + "(", smiles[: len(smiles) // 2])[row % 3]


@functools.lru_cache(maxsize=2)
def load_chebi(shared_data: pathlib.Path) -> Chebi:
    """Read ChEBI-20 test/validation and find each test molecule's nearest validation molecule."""
    test = _rows(shared_data / "chebi20" / "test.txt")
    val = _rows(shared_data / "chebi20" / "validation.txt")
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    with quiet_rdkit():
        val_fps = [gen.GetFingerprint(Chem.MolFromSmiles(r[1])) for r in val]
        test_fps = [gen.GetFingerprint(Chem.MolFromSmiles(r[1])) for r in test]
    neighbour = np.asarray([int(np.argmax(DataStructs.BulkTanimotoSimilarity(fp, val_fps))) for fp in test_fps])
    return Chebi([r[1] for r in test], [r[2] for r in test], [r[1] for r in val], [r[2] for r in val], neighbour)


def write_neighbour_files(chebi: Chebi, folder: pathlib.Path, rows: range, empty_every: int = 0
                          ) -> tuple[pathlib.Path, pathlib.Path]:
    """Mol2Cap/Cap2Mol prediction files for test `rows`: the nearest validation molecule's caption /
    SMILES as the prediction; of the SMILES, every 10th is corrupted and every 7th (from the 4th) is
    the reference itself in RDKit's canonical spelling; every `empty_every`-th output is left empty."""
    from icma_jax.eval.predictions import write_predictions

    nb = [int(chebi.neighbour[i]) for i in rows]
    empty = lambda k: empty_every and k % empty_every == empty_every - 1  # noqa: E731
    captions = ["" if empty(k) else chebi.val_texts[j] for k, j in enumerate(nb)]
    with quiet_rdkit():
        canonical = {i: Chem.MolToSmiles(Chem.MolFromSmiles(chebi.test_smiles[i]))
                     for k, i in enumerate(rows) if k % 7 == 3}
    smiles = [
        "" if empty(k) else canonical[i] if k % 7 == 3 else chebi.val_smiles[j] if k % 10
        else corrupt(chebi.val_smiles[j], k // 10)
        for k, (i, j) in enumerate(zip(rows, nb))
    ]
    m2c, c2m = folder / "mol2cap.tsv", folder / "cap2mol.tsv"
    write_predictions(m2c, "mol2cap", [chebi.test_smiles[i] for i in rows], [chebi.test_texts[i] for i in rows],
                      captions)
    write_predictions(c2m, "cap2mol", [chebi.test_texts[i] for i in rows], [chebi.test_smiles[i] for i in rows], smiles)
    return m2c, c2m


@pytest.fixture
def chebi(shared_data: pathlib.Path) -> Chebi:
    """ChEBI-20 test rows with each one's nearest validation molecule (computed once per session)."""
    return load_chebi(shared_data)
