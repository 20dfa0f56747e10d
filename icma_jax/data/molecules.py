"""RDKit parsing with errors that name the SMILES; canonical SMILES and InChI helpers (host side)."""

from __future__ import annotations

from rdkit import Chem, RDLogger

RDLogger.DisableLog("rdApp.*")  # parse failures become our own errors, not stderr noise


class InvalidSmilesError(ValueError):
    """RDKit could not parse (or sanitise) a SMILES string."""

    def __init__(self, smiles: str, where: str = ""):
        self.smiles = smiles
        super().__init__(f"{where + ': ' if where else ''}invalid SMILES {smiles!r} (RDKit could not parse it)")


def parse_smiles(smiles: str, where: str = "") -> Chem.Mol:
    """The sanitised RDKit molecule; `where` (e.g. 'test.txt:12') prefixes the error message."""
    mol = Chem.MolFromSmiles(smiles) if smiles and smiles.strip() else None
    if mol is None:
        raise InvalidSmilesError(smiles, where)
    return mol


def try_parse(smiles: str) -> Chem.Mol | None:
    """The molecule, or None when the string does not parse (empty strings included)."""
    return Chem.MolFromSmiles(smiles) if smiles and smiles.strip() else None


def canonical_smiles(smiles: str, *, isomeric: bool = True) -> str:
    return Chem.MolToSmiles(parse_smiles(smiles), isomericSmiles=isomeric)


def inchi_of_mol(mol: Chem.Mol | None) -> str | None:
    """Standard InChI of a molecule, or None when there is none or RDKit cannot make one."""
    if mol is None:
        return None
    try:
        return Chem.MolToInchi(mol) or None
    except Exception:  # RDKit raises assorted C++ errors for exotic valences; any failure = no InChI
        return None


def inchi_key_of_mol(mol: Chem.Mol | None) -> str | None:
    """Standard InChIKey of a molecule, or None when there is none or RDKit cannot make one."""
    if mol is None:
        return None
    try:
        return Chem.MolToInchiKey(mol) or None
    except Exception:  # as inchi_of_mol
        return None


def inchi(smiles: str) -> str | None:
    """Standard InChI, or None when the SMILES does not parse or InChI generation fails."""
    return inchi_of_mol(try_parse(smiles))
