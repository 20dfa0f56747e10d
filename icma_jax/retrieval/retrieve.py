"""One entry point for every retriever: `retrieve(task, method, database, queries, k, ...) -> Neighbours`.

Cap2Mol queries are captions (BM25 over database captions); Mol2Cap queries are molecules (fingerprints
or GIN embeddings of database molecules). The other pairings would read the answer and are refused.
"""

import pathlib

import numpy as np

from icma_jax.data.records import Split
from icma_jax.progress import Stage
from icma_jax.retrieval import bm25, fingerprints
from icma_jax.retrieval.index import Neighbours, from_positions

METHODS = ("bm25", "pathfp", "morgan", "gnn", "random")
_TASK_METHODS = {"cap2mol": ("bm25", "random"), "mol2cap": ("pathfp", "morgan", "gnn", "random")}


def self_exclusions(queries: Split, database: Split) -> list[np.ndarray]:
    """Per query, the database positions holding the query itself: same CID, and same row when both
    come from one file."""
    same_file = pathlib.Path(queries.path).resolve() == pathlib.Path(database.path).resolve()
    pos_of_row = {int(r): i for i, r in enumerate(database.rows)} if same_file else {}
    by_cid: dict[int, list[int]] = {}
    for i, c in enumerate(database.cids):
        by_cid.setdefault(int(c), []).append(i)
    out = []
    for r, c in zip(queries.rows, queries.cids):
        same = set(by_cid.get(int(c), []))
        if int(r) in pos_of_row:
            same.add(pos_of_row[int(r)])
        out.append(np.asarray(sorted(same), np.int64))
    return out


def _random(queries: Split, database: Split, k: int, excluded, seed: int):
    rows, scores = [], []
    for q, qrow in enumerate(queries.rows):
        allowed = np.arange(len(database))
        if excluded is not None:
            allowed = np.setdiff1d(allowed, excluded[q])
        rng = np.random.default_rng([seed, int(qrow)])
        pick = rng.choice(allowed, size=min(k, len(allowed)), replace=False)
        rows.append(pick.astype(np.int64))
        scores.append(np.zeros(len(pick)))
    return rows, scores


def retrieve(task: str, method: str, database: Split, queries: Split, k: int = 10, exclude_self: bool = False,
             *, encoder: str | pathlib.Path | None = None, seed: int = 0, batch_size: int = 512,
             progress: bool = True) -> Neighbours:
    """The `k` best database rows per query (best first; ties: lower row), self excluded on request.

    `encoder` (method gnn): our Orbax encoder folder or a Mole-BERT/Hu et al. `.pth` state_dict.
    Queries whose SMILES does not parse get no neighbours (listed in `invalid_queries`); invalid
    database molecules are never returned; both are counted in `notes`.
    """
    if method not in METHODS:
        raise ValueError(f"retrieval method {method!r} is not one of {METHODS}")
    if task not in _TASK_METHODS:
        raise ValueError(f"task {task!r} is not one of {tuple(_TASK_METHODS)}")
    if method not in _TASK_METHODS[task]:
        raise ValueError(f"method {method!r} does not fit task {task!r} (its queries would contain the answer); "
                         f"use one of {_TASK_METHODS[task]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(database) == 0:
        raise ValueError(f"{database.path}: the database has no rows")
    excluded = self_exclusions(queries, database) if exclude_self else None
    invalid_q: list[int] = []
    notes: list[str] = []
    if method == "random":
        rows, scores = _random(queries, database, k, excluded, seed)
    elif method == "bm25":
        index = bm25.build_index(database.texts)
        rows, scores = [], []
        texts = queries.texts
        for start in _progress(range(0, len(queries), batch_size), progress, "bm25", batch_size, len(queries)):
            sub = None if excluded is None else excluded[start:start + batch_size]
            r, s = bm25.topk(index, texts[start:start + batch_size], k, sub)
            rows.extend(r)
            scores.extend(s)
    elif method in fingerprints.METHODS:
        db_fps = fingerprints.compute(database.smiles, method)
        q_fps = fingerprints.compute(queries.smiles, method)
        invalid_q, invalid_db = list(q_fps.invalid), list(db_fps.invalid)
        rows, scores = fingerprints.topk(q_fps, fingerprints.build_index(db_fps), k, excluded)
        notes += _invalid_notes(queries, database, invalid_q, invalid_db)
    else:
        from icma_jax.retrieval import graph_knn  # noqa: PLC0415  (imports JAX/Flax only when needed)

        if encoder is None:
            raise ValueError("method 'gnn' needs an encoder: an Orbax folder from `icma-jax train-encoder` "
                             "or a Mole-BERT/Hu et al. .pth state_dict")
        model, variables, ignored = graph_knn.load_encoder(encoder)
        if ignored:
            notes.append(f"{encoder}: ignored {len(ignored)} non-GNN state_dict keys: {ignored[:5]}")
        db_emb, invalid_db = graph_knn.embed_smiles(model, variables, database.smiles, progress=progress)
        q_emb, invalid_q = graph_knn.embed_smiles(model, variables, queries.smiles, progress=progress)
        rows, scores = graph_knn.cosine_topk(q_emb, db_emb, k, excluded, invalid_q, invalid_db)
        notes += _invalid_notes(queries, database, invalid_q, invalid_db)
    return from_positions(method, queries, database, rows, scores, invalid_q, notes)


def _invalid_notes(queries: Split, database: Split, invalid_q: list[int], invalid_db: list[int]) -> list[str]:
    notes = []
    if invalid_q:
        lines = [queries.records[i].line for i in invalid_q]
        notes.append(f"{len(invalid_q)} query SMILES in {queries.path} do not parse and got no neighbours "
                     f"(lines {lines[:10]}{' ...' if len(lines) > 10 else ''})")
    if invalid_db:
        lines = [database.records[i].line for i in invalid_db]
        notes.append(f"{len(invalid_db)} database SMILES in {database.path} do not parse and are never returned "
                     f"(lines {lines[:10]}{' ...' if len(lines) > 10 else ''})")
    return notes


def _progress(it, enabled: bool, desc: str, step: int, total: int):
    with Stage(f"retrieval: {desc} top-k", total=total, unit="query", quiet=not enabled) as stage:
        for x in it:
            yield x
            stage.update(min(step, total - x))
