"""Cap2Mol metrics as MolT5's `mol_translation_metrics.py`, `fingerprint_metrics.py`, `fcd_metric.py`.

Over all rows: character BLEU (nltk `corpus_bleu`, default weights), exact match (equal InChI),
Levenshtein distance on the raw strings, validity. Over valid predictions only: MACCS, RDK
(`RDKFingerprint` defaults) and Morgan (radius 2, unfolded counts) Tanimoto similarities; FCD between
the canonical SMILES of the references and of the valid predictions (ChemNet from the `fcd` package).

Where we are stricter than MolT5's scripts (documented, tested): an empty prediction is invalid (RDKit
parses "" into an empty molecule, which MolT5 counted as valid and scored), and an InChI that cannot be
made ("" from RDKit, e.g. for `*` atoms) never matches (MolT5 compared "" == "" as a match).
"""

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import Levenshtein
import numpy as np
from rdkit import Chem, DataStructs, RDLogger, rdBase
from rdkit.Chem import MACCSkeys, rdFingerprintGenerator

from icma_jax.data.molecules import inchi_of_mol, try_parse
from icma_jax.eval.text_metrics import corpus_bleu_score
from icma_jax.progress import track

CAP2MOL_KEYS = ("bleu", "exact_match", "levenshtein", "validity", "maccs_fts", "rdk_fts", "morgan_fts", "fcd")
MORGAN_RADIUS = 2
# ChemNet runs its LSTM over >= 350 padded steps per batch, so on a CPU the time goes with the number of
# batches; 1024 rows per batch instead of fcd's 128 is ~3x faster with identical activations on CPU.
FCD_BATCH = 1024


@contextlib.contextmanager
def quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's log (parse errors of bad predictions, InChI warnings), restoring it afterwards.

    `rdBase.BlockLogs` does not catch the InChI warnings, so the channels are switched off and back on.
    """
    enabled = [line.split(":")[0] for line in rdBase.LogStatus().splitlines() if line.endswith(":enabled")]
    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        for channel in enabled:
            RDLogger.EnableLog(channel)


def parse_prediction(smiles: str) -> Chem.Mol | None:
    """The molecule, or None when RDKit cannot parse it or it has no atoms (empty string included)."""
    mol = try_parse(smiles)
    return mol if mol is not None and mol.GetNumAtoms() > 0 else None


def fingerprint_similarities(
    ref: Chem.Mol, pred: Chem.Mol, morgan: rdFingerprintGenerator.FingerprintGenerator64
) -> tuple[float, float, float]:
    """(MACCS, RDK, count-Morgan) Tanimoto similarities of two molecules."""
    maccs = DataStructs.TanimotoSimilarity(MACCSkeys.GenMACCSKeys(ref), MACCSkeys.GenMACCSKeys(pred))
    rdk = DataStructs.TanimotoSimilarity(Chem.RDKFingerprint(ref), Chem.RDKFingerprint(pred))
    counts = DataStructs.TanimotoSimilarity(
        morgan.GetSparseCountFingerprint(ref), morgan.GetSparseCountFingerprint(pred)
    )
    return float(maccs), float(rdk), float(counts)


def fcd_distance(ref_mols: Sequence[Chem.Mol], pred_mols: Sequence[Chem.Mol]) -> tuple[float | None, str]:
    """(FCD, note) between two molecule sets with the `fcd` package's ChemNet; (None, why) if impossible."""
    if len(ref_mols) < 2 or len(pred_mols) < 2:
        return None, (f"FCD not computed: needs at least 2 valid molecules per side "
                      f"({len(ref_mols)} refs, {len(pred_mols)} predictions)")
    try:
        import fcd
    except ImportError:  # fcd's ChemNet runs on torch, a test/reference dependency only
        return None, "FCD skipped: it needs torch and fcd: pip install 'icma-jax[torch]'"
    # MolT5's fcd_metric.py: canonical SMILES (fcd.canonical = MolToSmiles(MolFromSmiles(s))) on both sides.
    ref_smiles = [Chem.MolToSmiles(m) for m in ref_mols]
    pred_smiles = [Chem.MolToSmiles(m) for m in pred_mols]
    model = fcd.load_ref_model()
    with warnings.catch_warnings():  # long SMILES lengthen ChemNet's padding; fcd warns, MolT5 ran the same
        warnings.filterwarnings("ignore", message="Padding lengths differing")
        # = fcd.get_fcd, with bigger batches and the one-hot encoding in this process (no DataLoader worker).
        act_ref = fcd.get_predictions(model, ref_smiles, batch_size=FCD_BATCH, n_jobs=0)
        act_pred = fcd.get_predictions(model, pred_smiles, batch_size=FCD_BATCH, n_jobs=0)
    value = fcd.calculate_frechet_distance(
        mu1=np.mean(act_ref, axis=0), sigma1=np.cov(act_ref.T), mu2=np.mean(act_pred, axis=0), sigma2=np.cov(act_pred.T)
    )
    return float(value), f"ChemNet from fcd {fcd.__version__}"


def cap2mol_metrics(refs: Sequence[str], preds: Sequence[str], fcd: bool = True) -> dict:
    """MolT5's molecule metrics: keys `bleu, exact_match, levenshtein, validity, maccs_fts, rdk_fts,
    morgan_fts, fcd, n, n_invalid, n_empty, n_invalid_refs, fcd_note, tokenizer`.

    Invalid and empty predictions count as wrong in BLEU, exact match, Levenshtein and validity; the
    similarities average over rows whose prediction and reference both parse (None if there are none).
    `fcd=False` skips FCD (`fcd` None, `fcd_note` says so): ChemNet takes minutes on a CPU.
    """
    refs, preds = list(refs), list(preds)
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} references but {len(preds)} predictions")
    if not refs:
        raise ValueError("no rows to evaluate")
    with quiet_rdkit():
        return _cap2mol(refs, preds, fcd)


def _cap2mol(refs: list[str], preds: list[str], fcd: bool) -> dict:
    """`cap2mol_metrics` on checked inputs, with RDKit's log already silenced."""
    ref_mols = [parse_prediction(s) for s in refs]
    pred_mols = [parse_prediction(s) for s in preds]
    exact = 0
    sims = []
    morgan = rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS)
    for ref, pred in track(zip(ref_mols, pred_mols), "metrics: InChI and fingerprints", total=len(refs), unit="row"):
        if ref is None or pred is None:
            continue
        ref_inchi = inchi_of_mol(ref)
        exact += ref_inchi is not None and ref_inchi == inchi_of_mol(pred)
        sims.append(fingerprint_similarities(ref, pred, morgan))
    valid_preds = [m for m in pred_mols if m is not None]
    if fcd:
        fcd_value, fcd_note = fcd_distance([m for m in ref_mols if m is not None], valid_preds)
    else:
        fcd_value, fcd_note = None, "FCD not computed: disabled (fcd=False / --no-fcd)"
    sims_arr = np.asarray(sims, dtype=np.float64).reshape(-1, 3)
    mean = lambda col: float(np.mean(sims_arr[:, col])) if len(sims_arr) else None  # noqa: E731
    return {
        "bleu": corpus_bleu_score([list(r) for r in refs], [list(p) for p in preds], (0.25, 0.25, 0.25, 0.25)),
        "exact_match": exact / len(refs),
        "levenshtein": float(np.mean([Levenshtein.distance(p, r) for r, p in zip(refs, preds)])),
        "validity": len(valid_preds) / len(refs),
        "maccs_fts": mean(0),
        "rdk_fts": mean(1),
        "morgan_fts": mean(2),
        "fcd": fcd_value,
        "n": len(refs),
        "n_invalid": len(refs) - len(valid_preds),
        "n_empty": sum(not p for p in preds),
        "n_invalid_refs": sum(m is None for m in ref_mols),
        "fcd_note": fcd_note,
        "tokenizer": "characters",
    }
