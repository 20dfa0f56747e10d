"""Featurise all ChEBI-20 test molecules and batch them; prints molecules/s and the shapes compiled.

Usage: python bench/featurize.py [--data-dir DIR]   (default data root: ../shared/data, else the cache)
"""

import argparse
import pathlib
import time

from icma_jax.data import graphs as G
from icma_jax.data.sources import load_dataset_split


def main() -> None:
    ap = argparse.ArgumentParser()
    shared = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    ap.add_argument("--data-dir", default=str(shared) if shared.is_dir() else None)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    smiles = load_dataset_split("chebi20", "test", args.data_dir).smiles
    t0 = time.perf_counter()
    graphs, invalid = G.featurize_many(smiles)
    t1 = time.perf_counter()
    shapes = {(b.nodes["atom_type"].shape[0], b.senders.shape[0])
              for _, _, b in G.iterate_batches(graphs, args.batch_size)}
    t2 = time.perf_counter()
    print(f"featurised {len(smiles)} ChEBI-20 test molecules in {t1 - t0:.2f} s "
          f"({len(smiles) / (t1 - t0):.0f} mol/s), {len(invalid)} invalid")
    print(f"batched into padded GraphsTuples (batch {args.batch_size}) in {t2 - t1:.2f} s; "
          f"{len(shapes)} distinct (nodes, edges) buckets: {sorted(shapes)}")


if __name__ == "__main__":
    main()
