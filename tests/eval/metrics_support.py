"""Fixtures for the metric tests: ChEBI-20 rows and nearest-validation-molecule "predictions"."""

import csv
import dataclasses
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
    with open(path, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [row for row in reader]


def corrupt(smiles: str, row: int) -> str:
    """A deterministic damaged SMILES (unclosed ring/branch or truncation; some still parse)."""
    return (smiles + "1", smiles + "(", smiles[: len(smiles) // 2])[row % 3]


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


@pytest.fixture(scope="session")
def chebi(shared_data: pathlib.Path) -> Chebi:
    return load_chebi(shared_data)
