"""Retrieval quality as a caption predictor: each ChEBI-20 test molecule's top-1 neighbour's caption is
scored as its "prediction" with the MolT5 metric suite (SciBERT wordpieces), one row per retriever.

Database: ChEBI-20 train when present, else validation. Retrievers: random (seeded), pathfp (the
original's "morgan"), morgan (radius 2), an untrained GIN (seeded random init), the trained GIN
given with --encoder (an `icma-jax train-encoder` folder or a Mole-BERT .pth), and, as a separate named
method, the hybrid "morgan+gin": Morgan Tanimoto + `--hybrid-weight` x trained-GIN cosine.

Usage: python bench/retrieval_quality.py [--data-dir DIR] [--encoder DIR] [--limit N] [--hybrid-weight W]
"""

import argparse
import pathlib
import time

import numpy as np

from icma_jax.data.graphs import batch_graphs, featurize
from icma_jax.data.sources import load_dataset_split
from icma_jax.eval.metrics import mol2cap_metrics
from icma_jax.models.gnn import GIN, init_variables
from icma_jax.retrieval import fingerprints, graph_knn
from icma_jax.retrieval.index import Neighbours, from_positions
from icma_jax.retrieval.retrieve import retrieve

KEYS = ("bleu2", "bleu4", "rouge1", "rouge2", "rougeL", "meteor")


def _untrained_gin(database, queries, seed: int) -> Neighbours:
    model = GIN()
    variables = init_variables(model, batch_graphs([featurize("CCO")]), seed=seed)
    db_emb, bad_db = graph_knn.embed_smiles(model, variables, database.smiles)
    q_emb, bad_q = graph_knn.embed_smiles(model, variables, queries.smiles)
    rows, scores = graph_knn.cosine_topk(q_emb, db_emb, 1, None, bad_q, bad_db)
    return from_positions("gnn-untrained", queries, database, rows, scores, bad_q)


def _hybrid(database, queries, encoder: str, weight: float) -> Neighbours:
    """Top-1 by Morgan Tanimoto + weight x GIN cosine (an extra method, not the GIN retriever)."""
    tan_QxG = fingerprints.tanimoto(fingerprints.compute(queries.smiles, "morgan"),
                                    fingerprints.build_index(fingerprints.compute(database.smiles, "morgan")))
    model, variables, _ = graph_knn.load_encoder(encoder)
    db_emb, _ = graph_knn.embed_smiles(model, variables, database.smiles)
    q_emb, _ = graph_knn.embed_smiles(model, variables, queries.smiles)
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    score_QxG = np.nan_to_num(tan_QxG, nan=-np.inf) + weight * (unit(q_emb) @ unit(db_emb).T)
    best_Q = np.argmax(score_QxG, axis=1)  # ties: the lower row
    ok_Q = np.isfinite(score_QxG[np.arange(len(queries)), best_Q])
    rows = [np.array([b] if ok else [], np.int64) for b, ok in zip(best_Q, ok_Q)]
    scores = [score_QxG[i, r] for i, r in enumerate(rows)]
    return from_positions("morgan+gin", queries, database, rows, scores, np.flatnonzero(~ok_Q).tolist())


def main() -> None:
    ap = argparse.ArgumentParser()
    shared = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    ap.add_argument("--data-dir", default=str(shared) if shared.is_dir() else None)
    ap.add_argument("--encoder", action="append", default=[],
                    help="trained GIN (train-encoder folder or .pth); repeat to compare several, the first "
                         "one also makes the morgan+gin row")
    ap.add_argument("--limit", type=int, default=0, help="first N test molecules only (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hybrid-weight", type=float, default=1.0,
                    help="GIN-cosine weight of the morgan+gin row (results per weight: docs/RESULTS.md)")
    args = ap.parse_args()
    try:
        database, db_name = load_dataset_split("chebi20", "train", args.data_dir), "train"
    except FileNotFoundError:
        database, db_name = load_dataset_split("chebi20", "validation", args.data_dir), "validation"
    queries = load_dataset_split("chebi20", "test", args.data_dir)
    if args.limit:
        queries = queries.select(range(min(args.limit, len(queries))))
    print(f"ChEBI-20 test ({len(queries)} molecules) -> database {db_name} ({len(database)} rows); "
          f"prediction = top-1 neighbour's caption; metrics: MolT5 suite, SciBERT wordpieces")
    runs = [("random", lambda: retrieve("mol2cap", "random", database, queries, 1, seed=args.seed)),
            ("pathfp", lambda: retrieve("mol2cap", "pathfp", database, queries, 1)),
            ("morgan", lambda: retrieve("mol2cap", "morgan", database, queries, 1)),
            ("gin (untrained)", lambda: _untrained_gin(database, queries, args.seed))]
    for enc in args.encoder:
        name = "gin (trained)" if len(args.encoder) == 1 else f"gin {pathlib.Path(enc).name}"[:22]
        runs.append((name, lambda enc=enc: retrieve("mol2cap", "gnn", database, queries, 1, encoder=enc)))
    if args.encoder:
        runs.append(("morgan+gin", lambda: _hybrid(database, queries, args.encoder[0], args.hybrid_weight)))
    else:
        print("(no --encoder given: the trained GIN row is skipped)")
    pos_of_row = {int(r): i for i, r in enumerate(database.rows)}
    texts = database.texts
    header = f"{'retriever':<22} " + " ".join(f"{k:>7}" for k in KEYS) + "  no-neighbour  seconds"
    lines = [header, "-" * len(header)]
    for name, fn in runs:
        t0 = time.perf_counter()
        nb = fn()
        secs = time.perf_counter() - t0
        preds = [texts[pos_of_row[int(r[0])]] if len(r) else "" for r in nb.rows]
        m = mol2cap_metrics(queries.texts, preds)
        lines.append(f"{name:<22} " + " ".join(f"{m[k]:7.4f}" for k in KEYS)
                     + f"  {sum(1 for r in nb.rows if len(r) == 0):>12}  {secs:7.1f}")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
