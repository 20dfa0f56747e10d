"""From data files to in-context training sequences: splits, neighbours, selection, prompts.

The database, the fine-tuning queries and the test queries are row slices of their splits (config
`data.*`). Neighbours are database rows, best first; when the queries come from the database's own split,
each query's own row and CID are excluded. Selection (top-n / Random Walk / bucket, offset) is seeded per
(seed, epoch, query) so it can be recomputed identically after a restart.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

import jax
import numpy as np

from icma_jax.config import Config, DataConfig
from icma_jax.data import prompts
from icma_jax.data.prompts import Encoded, Pair, PromptReport
from icma_jax.data.records import Split
from icma_jax.data.sources import load_dataset_split
from icma_jax.progress import track
from icma_jax.retrieval import (
    Neighbours,
    SelectionConfig,
    read_neighbours_jsonl,
    retrieve,
    select,
    write_neighbours_jsonl,
)


@dataclasses.dataclass(frozen=True)
class Splits:
    """The three row slices a run uses."""

    database: Split
    train: Split
    test: Split
    valid: Split | None = None  # periodic-evaluation queries (None when train.eval_every is 0)


def _slice(split: Split, start: int, limit: int | None, what: str) -> Split:
    if start >= len(split) and len(split):
        raise ValueError(f"config field data.{what}_start={start} is past the end of {split.name} "
                         f"({len(split)} rows)")
    stop = len(split) if limit is None else min(len(split), start + limit)
    return split.select(range(start, stop))


def load_splits(cfg: DataConfig, valid_rows: int = 0) -> Splits:
    """Loads and slices the database, train and test splits (and `valid_rows` rows of the validation
    split when > 0); a missing file is a FileNotFoundError naming it."""
    cache: dict[str, Split] = {}

    def get(name: str) -> Split:
        if name not in cache:
            cache[name] = load_dataset_split(cfg.dataset, name, cfg.data_dir, strict=cfg.strict)
        return cache[name]

    return Splits(database=_slice(get(cfg.database_split), 0, cfg.database_limit, "database"),
                  train=_slice(get(cfg.train_split), cfg.train_start, cfg.train_limit, "train"),
                  test=_slice(get(cfg.test_split), cfg.test_start, cfg.test_limit, "test"),
                  valid=_slice(get(cfg.valid_split), 0, valid_rows, "valid") if valid_rows else None)


def selection_config(cfg: Config, seed: int) -> SelectionConfig:
    """The run's `selection.*` keys as the retrieval library's config, seeded with `seed`."""
    s = cfg.selection
    return SelectionConfig(n_examples=s.n_examples, strategy=s.strategy, p_skip=s.p_skip, offset=s.offset,
                           reverse=s.reverse, seed=seed)


def select_examples(neighbours: Sequence[np.ndarray], selection: SelectionConfig, draw: int = 0
                    ) -> list[np.ndarray]:
    """Per query the chosen database positions, most similar first (reversal is applied in the prompt).

    Seeded per (selection.seed, draw, query index) — the scheme of `retrieval.select_all` — so selections
    are recomputed identically after a restart; the run draws 0 unless `selection.resample_each_epoch`.
    """
    return [np.asarray(select(cand, selection, np.random.default_rng([selection.seed, draw, qi])), np.int64)
            for qi, cand in enumerate(neighbours)]


def pairs(split: Split) -> list[Pair]:
    """(SMILES, text) of every record."""
    return [Pair(r.smiles, r.text) for r in split.records]


def training_sequences(cfg: Config, splits: Splits, chosen: Sequence[np.ndarray], tokenizer
                       ) -> tuple[list[Encoded], PromptReport]:
    """Tokenised in-context training sequences for every train query, with the truncation report."""
    db, queries = pairs(splits.database), pairs(splits.train)
    tokenize = prompts.tokenize_fn(tokenizer)
    report, seqs = PromptReport(), []
    rows_of = track(zip(queries, chosen), "prompts: training sequences", total=len(queries), unit="prompt",
                    quiet=jax.process_index() != 0)
    for q, rows in rows_of:
        enc, rep = prompts.encode_train(cfg.data.task, q, [db[i] for i in rows], tokenizer,
                                        cutoff_len=cfg.prompt.cutoff_len, truncation=cfg.prompt.truncation,
                                        train_on_inputs=cfg.prompt.train_on_inputs, reverse=cfg.selection.reverse,
                                        zero_shot=cfg.prompt.zero_shot, tokenize=tokenize)
        seqs.append(enc)
        report.add(rep)
    return seqs, report


@dataclasses.dataclass(frozen=True)
class RunNeighbours:
    """Database positions per query (best first) for the train and test queries."""

    train: list[np.ndarray]
    test: list[np.ndarray]
    valid: list[np.ndarray] | None = None


def resolve_method(cfg: Config) -> str:
    """`auto`: BM25 over captions for Cap2Mol; the GIN when `encoder_path` is given, else Morgan, for Mol2Cap."""
    if cfg.retrieval.method != "auto":
        return cfg.retrieval.method
    if cfg.data.task == "cap2mol":
        return "bm25"
    return "gnn" if cfg.retrieval.encoder_path else "morgan"


def _positions(nb: Neighbours, queries: Split, database: Split, path: pathlib.Path) -> list[np.ndarray]:
    """Database positions for each query of `queries`, matched by query row (never by stride)."""
    all_pos = nb.positions(database)
    out = []
    for r in queries.rows:
        try:
            out.append(all_pos[nb.of_row(int(r))])
        except KeyError:
            raise ValueError(f"{path}: no neighbours for query row {int(r)} of {queries.name}") from None
    return out


def neighbours_for_run(cfg: Config, splits: Splits, workdir: pathlib.Path) -> RunNeighbours:
    """Neighbours of the train and test queries: read from `retrieval.neighbours_dir` (method `files`) or
    DIR/neighbours when present, otherwise retrieved and written to DIR/neighbours (reused on restart)."""
    queries_by_name = {"train": splits.train, "test": splits.test, "valid": splits.valid}
    queries_by_name = {k: v for k, v in queries_by_name.items() if v is not None}
    if cfg.prompt.zero_shot:
        return RunNeighbours(**{k: [np.zeros(0, np.int64)] * len(v) for k, v in queries_by_name.items()})
    from_files = cfg.retrieval.method == "files"
    folder = pathlib.Path(cfg.retrieval.neighbours_dir) if from_files else workdir / "neighbours"
    out = {}
    for name, queries in queries_by_name.items():
        path = folder / f"{name}.jsonl"
        if path.is_file():
            nb = read_neighbours_jsonl(path)
        elif from_files:
            raise FileNotFoundError(f"{path} not found (retrieval.method='files' reads {folder}/"
                                    "{train,test,valid}.jsonl)")
        else:
            nb = retrieve(cfg.data.task, resolve_method(cfg), splits.database, queries,
                          k=cfg.retrieval.num_candidates, exclude_self=queries.path == splits.database.path,
                          encoder=cfg.retrieval.encoder_path, seed=cfg.train.seed,
                          progress=jax.process_index() == 0)
            if jax.process_index() == 0:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                write_neighbours_jsonl(tmp, nb)
                os.replace(tmp, path)
        for note in nb.notes:
            print(f"retrieval ({name}): {note}", flush=True)
        out[name] = _positions(nb, queries, splits.database, path)
    return RunNeighbours(**out)
