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

    out = {}

    def ours():
        out["rows"], out["scores"] = [], []
        for s in range(0, len(queries), 1024):
            r, sc = bm25.topk(index, queries[s:s + 1024], 10)
            out["rows"] += r
            out["scores"] += sc

    t_ours = _best_of(ours, repeats)
    ref = BM25Okapi([bm25.tokenize(t) for t in train.texts])
    picks = np.linspace(0, len(queries) - 1, n_ref).astype(int)
    tok = [bm25.tokenize(queries[i]) for i in picks]
    t0 = time.perf_counter()
    ref_scores = [ref.get_scores(t) for t in tok]
    t_ref = (time.perf_counter() - t0) / len(picks)
    bad, rel = 0, 0.0
    for i, s in zip(picks, ref_scores):
        order = np.argsort(-s, kind="stable")[:10]
        bad += int(not np.array_equal(order, out["rows"][i]))
        rel = max(rel, float(np.max(np.abs(out["scores"][i] - s[order]) / np.maximum(np.abs(s[order]), 1e-300))))
    print(f"bm25 parity on the {len(picks)} timed queries: {bad} with a different top-10 order, "
          f"max relative score error {rel:.1e}")
    per_q = t_ours / len(queries)
    print(f"bm25: index {t_build:.2f}s once; top-10 for {len(queries)} queries x {len(train)} docs in {t_ours:.3f}s "
          f"({per_q * 1e3:.3f} ms/query); rank_bm25.get_scores {t_ref * 1e3:.2f} ms/query ({len(picks)} timed)")
    print(f"bm25 speedup vs rank_bm25: {t_ref / per_q:.0f}")
    print(f"bm25 speedup vs rank_bm25 incl. index build: {t_ref / ((t_ours + t_build) / len(queries)):.0f}")


def _bulk_folded(q_fps, d_fps) -> list[np.ndarray]:
    """RDKit FingerprintSimilarity semantics (fold the longer) with Bulk calls: the database is folded
    once per length; per query one Bulk call per length group."""
    lengths = sorted({f.GetNumBits() for f in d_fps})
    n_of = np.asarray([f.GetNumBits() for f in d_fps])
    at_least = {L: (np.flatnonzero(n_of >= L), [DataStructs.FoldFingerprint(d_fps[i], d_fps[i].GetNumBits() // L)
                                                if d_fps[i].GetNumBits() > L else d_fps[i]
                                                for i in np.flatnonzero(n_of >= L)]) for L in lengths}
    exactly = {L: (np.flatnonzero(n_of == L), [d_fps[i] for i in np.flatnonzero(n_of == L)]) for L in lengths}
    out = []
    for q in q_fps:
        lq, row = q.GetNumBits(), np.zeros(len(d_fps))
        for L in lengths:
            if L > lq:
                break
            pos, group = at_least[L] if L == lq else exactly[L]
            if len(group):
                qf = q if L == lq else DataStructs.FoldFingerprint(q, lq // L)
                row[pos] = DataStructs.BulkTanimotoSimilarity(qf, group)
        if lq not in at_least:  # longer than some database rows, shorter than none equal: fold those
            pos = np.flatnonzero(n_of > lq)
            row[pos] = [DataStructs.FingerprintSimilarity(q, d_fps[i]) for i in pos]
        out.append(row)
    return out


def _parity(method: str, ref_rows, got) -> None:
    bad, err = 0, 0.0
    for i, row in enumerate(ref_rows):
        row = np.asarray(row)
        order = np.argsort(-row, kind="stable")[:10]
        bad += int(not np.array_equal(order, got["rows"][i]))
        err = max(err, float(np.max(np.abs(row[order] - got["scores"][i]))))
    print(f"{method} parity on all {len(ref_rows)} queries: {bad} with a different top-10 order, "
          f"max abs Tanimoto error {err:.1e}")


def bench_fingerprints(data_dir, n_ref: int, repeats: int) -> None:
    db = load_dataset_split("chebi20", "validation", data_dir)
    qs = load_dataset_split("chebi20", "test", data_dir)
    for method in fingerprints.METHODS:
        t0 = time.perf_counter()
        fd, fq = fingerprints.compute(db.smiles, method), fingerprints.compute(qs.smiles, method)
        index = fingerprints.build_index(fd)
        t_fp = time.perf_counter() - t0
        got = {}
        t_ours = _best_of(lambda: got.update(zip(("rows", "scores"), fingerprints.topk(fq, index, 10))), repeats)
        d_fps = [fingerprints.rdkit_fingerprint(Chem.MolFromSmiles(s), method) for s in db.smiles]
        if method == "morgan":
            q_fps = [fingerprints.rdkit_fingerprint(Chem.MolFromSmiles(s), method) for s in qs.smiles]
            sims = {}
            t_ref = _best_of(lambda: sims.update(
                all=[DataStructs.BulkTanimotoSimilarity(f, d_fps) for f in q_fps]), repeats)
            ref_name = "loop of BulkTanimotoSimilarity"
            _parity(method, sims["all"], got)
        else:
            q_fps = [fingerprints.rdkit_fingerprint(Chem.MolFromSmiles(s), method) for s in qs.smiles]
            sims = {}
            t_ref = _best_of(lambda: sims.update(all=_bulk_folded(q_fps, d_fps)), 1)
            ref_name = "loop of BulkTanimotoSimilarity over pre-folded length groups"
            _parity(method, sims["all"], got)
            picks = np.linspace(0, len(qs) - 1, 3).astype(int)
            t0 = time.perf_counter()
            for i in picks:
                [DataStructs.FingerprintSimilarity(q_fps[i], d) for d in d_fps]
            t_pair = (time.perf_counter() - t0) / len(picks) * len(qs)
            print(f"pathfp: the original's per-pair FingerprintSimilarity loop would take {t_pair:.0f}s "
                  f"(3 queries timed): speedup {t_pair / t_ours:.0f}")
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
