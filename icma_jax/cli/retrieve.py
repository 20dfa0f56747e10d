"""`icma-jax retrieve`: neighbour files for a query split against a database split (ICMA_SPEC §2).

Writes the original's layout (`query_cid<TAB>neighbour_cid<TAB>score`, best first) to --out and a
JSONL keyed by query row next to it (`<out>.jsonl`, or --jsonl).
"""

import argparse
import pathlib
import time

from icma_jax.data.records import load_split
from icma_jax.retrieval.index import write_neighbours_jsonl, write_neighbours_tsv
from icma_jax.retrieval.retrieve import METHODS, retrieve


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrieve", help="build neighbour files (BM25, fingerprints, GIN, random)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("mol2cap", "cap2mol"), required=True)
    p.add_argument("--method", choices=METHODS, required=True,
                   help="bm25 (captions, cap2mol); pathfp = the original's 'morgan' (RDKit path FP), morgan "
                        "(radius 2, 2048 bits), gnn (needs --encoder), random (seeded)")
    p.add_argument("--database", required=True, help="CID/SMILES/description TSV searched (the training split)")
    p.add_argument("--queries", required=True, help="CID/SMILES/description TSV of the queries")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--out", required=True, help="TSV in the original layout")
    p.add_argument("--jsonl", default=None, help="JSONL keyed by query row (default: <out>.jsonl)")
    p.add_argument("--encoder", default=None, help="gnn: `train-encoder` folder or a Mole-BERT .pth state_dict")
    p.add_argument("--exclude-self", action="store_true",
                   help="drop each query itself (same CID; same row when both files are one) before top-k")
    p.add_argument("--seed", type=int, default=0, help="seed of method random")
    p.add_argument("--strict", action="store_true", help="fail on the first malformed data row")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    database = load_split(args.database, strict=args.strict)
    queries = load_split(args.queries, strict=args.strict)
    for split in (database, queries):
        if split.report.n_skipped or split.report.duplicate_cids:
            print(split.report.summary())
    t0 = time.perf_counter()
    nb = retrieve(args.task, args.method, database, queries, args.k, args.exclude_self,
                  encoder=args.encoder, seed=args.seed, progress=True)
    out = pathlib.Path(args.out)
    jsonl = pathlib.Path(args.jsonl) if args.jsonl else out.with_name(out.name + ".jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_neighbours_tsv(out, nb)
    write_neighbours_jsonl(jsonl, nb)
    for note in nb.notes:
        print(note)
    n_lines = sum(len(r) for r in nb.rows)
    print(f"{args.method}: {len(nb)} queries x {len(database)} database rows, {n_lines} neighbours "
          f"in {time.perf_counter() - t0:.1f}s -> {out} and {jsonl}")
    return 0
