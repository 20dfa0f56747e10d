"""Small real-data slices for the retrieval tests (loaded once per session)."""

import pytest

from icma_jax.data.records import load_split


@pytest.fixture(scope="session")
def iupac(shared_data):
    """PubChem324k iupac: (train, test) splits."""
    root = shared_data / "pubchem324k" / "iupac"
    return load_split(root / "train.txt"), load_split(root / "test.txt")


@pytest.fixture(scope="session")
def chebi(shared_data):
    """ChEBI-20: (validation, test) splits."""
    root = shared_data / "chebi20"
    return load_split(root / "validation.txt"), load_split(root / "test.txt")
