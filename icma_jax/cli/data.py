"""`icma-jax data stats --dataset NAME --split SPLIT`: counts, length percentiles, invalid SMILES."""

import argparse

import numpy as np

from icma_jax.data.molecules import try_parse
from icma_jax.data.records import load_split
from icma_jax.data.sources import DATASETS, SPLITS, split_path

PERCENTILES = (0, 50, 90, 99, 100)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect dataset files", description=__doc__)
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    s = dsub.add_parser("stats", help="row counts, length percentiles, invalid-SMILES count")
    s.add_argument("--dataset", choices=sorted(DATASETS), help="a known dataset (or use --file)")
    s.add_argument("--split", choices=SPLITS, default="test")
    s.add_argument("--file", default=None, help="any CID/SMILES/description TSV instead of --dataset")
    s.add_argument("--data-dir", default=None, help="data root (default: $ICMA_DATA_DIR, else the cache)")
    s.add_argument("--strict", action="store_true", help="fail on the first malformed row")
    s.set_defaults(func=run_stats)


def _pct(values: list[int]) -> str:
    if not values:
        return "-"
    q = np.percentile(np.asarray(values), PERCENTILES).round().astype(int)
    return "  ".join(f"p{p}={v}" for p, v in zip(PERCENTILES, q))


def stats(split) -> dict:
    invalid = [r for r in split.records if try_parse(r.smiles) is None]
    return {
        "file": str(split.path), "rows": split.report.n_rows, "kept": split.report.n_kept,
        "skipped": {k: len(v) for k, v in split.report.skipped.items()},
        "duplicate_cids": len(split.report.duplicate_cids),
        "invalid_smiles": len(invalid), "invalid_smiles_lines": [r.line for r in invalid],
        "smiles_chars": _pct([len(r.smiles) for r in split.records]),
        "text_chars": _pct([len(r.text) for r in split.records]),
        "text_words": _pct([len(r.text.split()) for r in split.records]),
    }


def run_stats(args: argparse.Namespace) -> int:
    if not args.file and not args.dataset:
        raise ValueError("give --dataset NAME or --file PATH")
    path = args.file or split_path(args.dataset, args.split, args.data_dir)
    s = stats(load_split(path, strict=args.strict))
    print(f"file            {s['file']}")
    print(f"rows            {s['rows']} read, {s['kept']} kept"
          + "".join(f", {n} skipped ({why})" for why, n in sorted(s["skipped"].items())))
    print(f"duplicate CIDs  {s['duplicate_cids']}")
    lines = s["invalid_smiles_lines"]
    print(f"invalid SMILES  {s['invalid_smiles']}" + (f" (lines {', '.join(map(str, lines[:10]))}"
                                                      f"{', ...' if len(lines) > 10 else ''})" if lines else ""))
    print(f"SMILES chars    {s['smiles_chars']}")
    print(f"text chars      {s['text_chars']}")
    print(f"text words      {s['text_words']}")
    return 0
