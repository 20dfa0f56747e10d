"""RDKit helpers: errors name the SMILES; canonical forms and InChI."""

import pytest

from icma_jax.data.molecules import InvalidSmilesError, canonical_smiles, inchi, parse_smiles, try_parse


def test_invalid_smiles_error_names_it():
    with pytest.raises(InvalidSmilesError, match=r"test\.txt:7: invalid SMILES 'C1CC\(' "):
        parse_smiles("C1CC(", where="test.txt:7")
    with pytest.raises(ValueError, match="invalid SMILES ''"):
        parse_smiles("")
    assert try_parse("not a molecule") is None and try_parse("  ") is None


def test_canonical_and_inchi():
    assert canonical_smiles("OCC") == canonical_smiles("C(O)C") == "CCO"
    assert inchi("OCC") == inchi("C(C)O") == "InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3"
    assert inchi("c1ccccc1") == inchi("C1=CC=CC=C1")
    assert inchi("C1CC(") is None


def test_chebi_doubled_backslash_parses(chebi_slice):
    from icma_jax.data.records import load_split
    rec = load_split(chebi_slice / "chebi20/test.txt").records[0]
    assert "\\\\" in rec.smiles and parse_smiles(rec.smiles).GetNumAtoms() > 10
