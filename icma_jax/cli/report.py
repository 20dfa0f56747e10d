"""`icma-jax report WORKDIR [--out report.html] [--tag test] [--data-dir DIR]`: one self-contained HTML page.

The run's config, every eval_*.json, the training loss, and per example the molecules (drawn by RDKit),
the context examples with their retrieval scores, reference vs prediction and per-example scores.
"""

import argparse

from icma_jax.run.report import build_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `icma-jax report`."""
    p = sub.add_parser("report", help="HTML report of a run directory", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdir", help="a run directory (train.py --workdir)")
    p.add_argument("--out", default=None, help="output file (default WORKDIR/report.html)")
    p.add_argument("--tag", default="test",
                   help="which predictions_<tag>.tsv to show per example (test, test_zero_shot, valid_step<N>)")
    p.add_argument("--data-dir", default=None,
                   help="data root holding the database split (default: the config's data.data_dir, "
                        "then $ICMA_DATA_DIR, then the cache)")
    p.add_argument("--no-context", action="store_true", help="leave the retrieved context examples out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the report and print where it is."""
    out = build_report(args.workdir, args.out, tag=args.tag, data_dir=args.data_dir, context=not args.no_context)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
