"""MolT5 metric suite speed on ChEBI-20-sized files: ours vs MolT5's scripts (transcribed), same run.

Run: `.venv/bin/python bench/metrics.py [--rows 3300] [--fcd-rows 0]` (2-4 minutes on 2 CPU cores; FCD
adds about 0.1 s per row on a CPU).
Predictions are each test molecule's nearest validation molecule (caption / SMILES, every 10th SMILES
corrupted). Prints CPU seconds per side (wall time beside it), `speed vs MolT5 scripts: X` per task (CPU-time
ratio, above 1 = we are faster),
and the largest metric difference (must be <= 1e-4). Target: Mol2Cap on 3,300 rows well under 60 s.
WordNet loading (once per process) is timed separately.
"""

import argparse
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "eval"))  # the MolT5 transcription and the file builder

from metrics_support import load_chebi, write_neighbour_files  # noqa: E402
from molt5_reference import fcd_evaluate, fingerprint_evaluate, mol_evaluate, text_evaluate  # noqa: E402

from icma_jax.eval import wordpiece  # noqa: E402
from icma_jax.eval.metrics import evaluate_predictions, read_predictions  # noqa: E402
from icma_jax.eval.wordnet import load_wordnet  # noqa: E402

TEXT_KEYS = ("bleu2", "bleu4", "rouge1", "rouge2", "rougeL", "meteor")


def _timed(fn, *args, **kwargs):
    """(result, CPU seconds of this process) of one call; the wall time is printed alongside.

    CPU time, not wall time, is compared: on a shared 2-core machine other jobs stretch wall time.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"  [{getattr(fn, '__name__', 'call')}: {cpu:.1f} s CPU, {wall:.1f} s wall]")
    return out, cpu


def _worst(ours: dict, ref: dict) -> str:
    """The largest |ours - reference| over the reference's keys, as text."""
    key = max(ref, key=lambda k: abs(ours[k] - float(ref[k])))
    return f"largest difference {abs(ours[key] - float(ref[key])):.2e} ({key})"


def main() -> None:
    """Build the files, time both sides per task, print ratios and differences."""
    ap = argparse.ArgumentParser(description=__doc__)
    shared = REPO.parent / "shared" / "data"
    ap.add_argument("--data-dir", default=str(shared), help="folder holding chebi20/{test,validation}.txt")
    ap.add_argument("--rows", type=int, default=3300)
    ap.add_argument("--fcd-rows", type=int, default=0, help="also time FCD on this many rows (slow on CPU)")
    args = ap.parse_args()
    chebi = load_chebi(pathlib.Path(args.data_dir))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        m2c, c2m = write_neighbour_files(chebi, tmp, range(min(args.rows, len(chebi.test_smiles))))
        scibert = tmp / "scibert"
        scibert.mkdir()
        (scibert / "vocab.txt").write_bytes(wordpiece.SCIBERT_VOCAB.read_bytes())
        _, t_wn = _timed(load_wordnet)
        print(f"WordNet load (once per process): {t_wn:.1f} s CPU")

        ours, t_ours = _timed(lambda: evaluate_predictions(read_predictions(m2c)))
        ref, t_ref = _timed(text_evaluate, str(scibert), m2c)
        print(f"Mol2Cap {ours['n']} rows: ours {t_ours:.1f} s CPU, MolT5 scripts {t_ref:.1f} s CPU; "
              f"speed vs MolT5 scripts: {t_ref / t_ours:.2f}; {_worst(ours, dict(zip(TEXT_KEYS, ref)))}")

        ours, t_ours = _timed(lambda: evaluate_predictions(read_predictions(c2m), fcd=False))
        (mol, fp), t_ref = _timed(lambda: (mol_evaluate(c2m), fingerprint_evaluate(c2m)))
        ref = {**dict(zip(("bleu", "exact_match", "levenshtein", "validity"), mol)),
               **dict(zip(("validity", "maccs_fts", "rdk_fts", "morgan_fts"), fp))}
        print(f"Cap2Mol {ours['n']} rows (no FCD): ours {t_ours:.1f} s CPU, MolT5 scripts {t_ref:.1f} s CPU; "
              f"speed vs MolT5 scripts: {t_ref / t_ours:.2f}; {_worst(ours, ref)}")

        if args.fcd_rows:
            import fcd
            from rdkit import Chem

            from icma_jax.eval.mol_metrics import fcd_distance, parse_prediction, quiet_rdkit

            (tmp / "fcd").mkdir()
            _, small = write_neighbour_files(chebi, tmp / "fcd", range(args.fcd_rows))
            preds = read_predictions(small)
            fcd.load_ref_model()  # loaded once per process (lru_cache), shared by both sides: not timed
            with quiet_rdkit():
                refs = [Chem.MolFromSmiles(s) for s in preds.refs]
                outs = [m for m in map(parse_prediction, preds.outputs) if m is not None]
            (ours, _), t_ours = _timed(fcd_distance, refs, outs)
            ref, t_ref = _timed(fcd_evaluate, small)
            print(f"FCD {args.fcd_rows} rows: ours {t_ours:.1f} s CPU, MolT5 script {t_ref:.1f} s CPU; "
                  f"speed vs MolT5 script: {t_ref / t_ours:.2f}; difference {abs(ours - ref):.2e}")

if __name__ == "__main__":
    main()
