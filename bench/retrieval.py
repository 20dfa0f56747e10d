"""Retrieval speed against the reference implementations, measured in the same run.

BM25: PubChem324k iupac test (1,985 queries) vs train (11,856 documents); ours = shared index + batched
exact top-10, reference = `rank_bm25.BM25Okapi.get_scores` per query (timed on --ref-queries queries).
Fingerprints: ChEBI-20 test vs validation; morgan against a loop of RDKit `BulkTanimotoSimilarity` over
all queries (fingerprints precomputed for both), pathfp (lengths differ) against the original's per-pair
`DataStructs.FingerprintSimilarity` loop (timed on --ref-queries queries, extrapolated).

Usage: python bench/retrieval.py [--data-dir DIR] [--ref-queries 100]
"""

import argparse
import pathlib
import time

import numpy as np
from rank_bm25 import BM25Okapi
from rdkit import Chem, DataStructs

from icma_jax.data.sources import load_dataset_split
from icma_jax.retrieval import bm25, fingerprints


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_bm25(data_dir, n_ref: int, repeats: int) -> None:
    train = load_dataset_split("pubchem324k-iupac", "train", data_dir)
    test = load_dataset_split("pubchem324k-iupac", "test", data_dir)
    t0 = time.perf_counter()
    index = bm25.build_index(train.texts)
    t_build = time.perf_counter() - t0
    queries = test.texts

    def ours():
        for s in range(0, len(queries), 1024):
            bm25.topk(index, queries[s:s + 1024], 10)

    t_ours = _best_of(ours, repeats)
    ref = BM25Okapi([bm25.tokenize(t) for t in train.texts])
    picks = np.linspace(0, len(queries) - 1, n_ref).astype(int)
    tok = [bm25.tokenize(queries[i]) for i in picks]
    t_ref = _best_of(lambda: [ref.get_scores(t) for t in tok], 1) / len(picks)
    per_q = t_ours / len(queries)
    print(f"bm25: index {t_build:.2f}s once; top-10 for {len(queries)} queries x {len(train)} docs in {t_ours:.3f}s "
          f"({per_q * 1e3:.3f} ms/query); rank_bm25.get_scores {t_ref * 1e3:.2f} ms/query ({len(picks)} timed)")
    print(f"bm25 speedup vs rank_bm25: {t_ref / per_q:.0f}")
    print(f"bm25 speedup vs rank_bm25 incl. index build: {t_ref / ((t_ours + t_build) / len(queries)):.0f}")


def bench_fingerprints(data_dir, n_ref: int, repeats: int) -> None:
    db = load_dataset_split("chebi20", "validation", data_dir)
    qs = load_dataset_split("chebi20", "test", data_dir)
    for method in fingerprints.METHODS:
        t0 = time.perf_counter()
        fd, fq = fingerprints.compute(db.smiles, method), fingerprints.compute(qs.smiles, method)
        index = fingerprints.build_index(fd)
        t_fp = time.perf_counter() - t0
        t_ours = _best_of(lambda: fingerprints.topk(fq, index, 10), repeats)
        d_fps = [fingerprints.rdkit_fingerprint(Chem.MolFromSmiles(s), method) for s in db.smiles]
        if method == "morgan":
            q_fps = [fingerprints.rdkit_fingerprint(Chem.MolFromSmiles(s), method) for s in qs.smiles]
            t_ref = _best_of(lambda: [DataStructs.BulkTanimotoSimilarity(f, d_fps) for f in q_fps], repeats)
            ref_name = "loop of BulkTanimotoSimilarity"
        else:
            picks = np.linspace(0, len(qs) - 1, max(1, n_ref // 5)).astype(int)
            q_fps = [fingerprints.rdkit_fingerprint(Chem.MolFromSmiles(qs.smiles[i]), method) for i in picks]
            t0 = time.perf_counter()
            for f in q_fps:
                [DataStructs.FingerprintSimilarity(f, d) for d in d_fps]
            t_ref = (time.perf_counter() - t0) / len(picks) * len(qs)
            ref_name = f"per-pair FingerprintSimilarity loop (the original; {len(picks)} queries timed)"
        print(f"{method}: fingerprints + index {t_fp:.1f}s once; Tanimoto + top-10 for {len(qs)} x {len(db)} in "
              f"{t_ours:.3f}s; RDKit {ref_name}: {t_ref:.3f}s")
        print(f"{method} tanimoto speedup vs RDKit: {t_ref / t_ours:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    shared = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    ap.add_argument("--data-dir", default=str(shared) if shared.is_dir() else None)
    ap.add_argument("--ref-queries", type=int, default=100, help="queries timed with the slow references")
    ap.add_argument("--repeats", type=int, default=3, help="best of N for our timings and Bulk")
    args = ap.parse_args()
    bench_bm25(args.data_dir, args.ref_queries, args.repeats)
    bench_fingerprints(args.data_dir, args.ref_queries, args.repeats)


if __name__ == "__main__":
    main()
