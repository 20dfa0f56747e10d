"""`icma-jax evaluate FILE [--tokenizer scibert|PATH|HUB_ID] [--no-fcd] [--json OUT]`: the MolT5 metrics.

FILE is a prediction file in MolT5's layout (header `SMILES\\tground truth\\toutput` for Mol2Cap,
`description\\tground truth\\toutput` for Cap2Mol); the task follows from the header.
"""

import argparse
import json
import pathlib

from icma_jax.eval.metrics import evaluate_predictions, format_report, read_predictions
from icma_jax.eval.wordpiece import MAX_LENGTH, SCIBERT


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `icma-jax evaluate`."""
    p = sub.add_parser("evaluate", help="MolT5 metrics of a prediction file", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="prediction TSV in MolT5's layout")
    p.add_argument("--tokenizer", default=SCIBERT,
                   help="Mol2Cap caption tokens: 'scibert' (MolT5's protocol, default), a vocab.txt, "
                        "or an HF tokenizer folder / hub id (ICMA's scripts: laituan245/molt5-base)")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH, help="tokens kept per caption (MolT5: 512)")
    p.add_argument("--no-fcd", action="store_true", help="skip FCD (ChemNet takes minutes on a CPU)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the metrics as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the file, compute its task's metrics, print the table, optionally write JSON."""
    result = evaluate_predictions(read_predictions(args.file), tokenizer=args.tokenizer,
                                  max_length=args.max_length, fcd=not args.no_fcd)
    print(format_report(result))
    if args.json:
        out = pathlib.Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0
