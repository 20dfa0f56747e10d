"""`icma-jax download chebi20|pubchem324k [--dest DIR]`: fetch and verify the public data files."""

import argparse

from icma_jax.data.download import GROUPS, download


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch a dataset's public files (checksummed, atomic)",
                       description=__doc__)
    p.add_argument("dataset", choices=sorted(GROUPS))
    p.add_argument("--dest", default=None, help="data root (default: $ICMA_DATA_DIR, else ~/.cache/icma_jax/data)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per connection attempt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = download(args.dataset, args.dest, timeout=args.timeout)
    print(f"{len(paths)} file(s) ready under {paths[0].parents[1] if paths else args.dest}")
    return 0
