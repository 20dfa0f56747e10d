"""`predict`: new molecules (Mol2Cap) or captions (Cap2Mol) through a run's retrieval, prompts and decoding.

`from_run(DIR)` restores the run's checkpoint (`run.export.restore_run`), its database, retriever, selection
(the evaluation's seeded `select_examples`: query i of a call is selected as test row i was) and its
evaluation plan; `untuned(model, database, task)` does the same for a model that was never tuned
(in-context learning only). A `Predictor` keeps the weights in the decoding layout, so a notebook pays for
loading once: `p = from_run("runs/demo"); p(["CCO"])`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from rdkit import Chem

from icma_jax import config as config_lib
from icma_jax.config import Config
from icma_jax.data import prompts
from icma_jax.data.molecules import inchi_key_of_mol, parse_smiles, try_parse
from icma_jax.data.records import LoadReport, Record, Split, load_split
from icma_jax.eval.answer import extract_answer
from icma_jax.eval.generate import decoding_layout
from icma_jax.models.transformer import build_model
from icma_jax.retrieval import retrieve
from icma_jax.run import backbone as backbone_lib, context, evaluate, export
from icma_jax.sharding import make_mesh


@dataclasses.dataclass(frozen=True)
class ContextExample:
    """One example shown in the prompt, with its retrieval score."""

    cid: int
    smiles: str
    text: str
    score: float


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One answer; Cap2Mol answers carry RDKit's verdict, canonical SMILES and InChIKey."""

    task: str
    query: str
    answer: str
    context: tuple[ContextExample, ...]  # the examples kept in the prompt, most similar first
    prompt_ids: tuple[int, ...]
    tokens: tuple[int, ...]  # generated ids, up to EOS
    cut: bool  # max_new_tokens ended it, not EOS
    seed: int | None  # sampling: the seed of this query's batch (None: greedy)
    valid: bool | None = None
    canonical: str | None = None
    inchikey: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def query_split(task: str, queries: Sequence[str], where: Sequence[str] | None = None) -> Split:
    """The queries as a Split (row i = query i); Mol2Cap SMILES that RDKit cannot parse are a one-line error."""
    where = list(where) if where is not None else [f"query {i + 1}" for i in range(len(queries))]
    records = []
    for i, (q, w) in enumerate(zip(queries, where)):
        if not q or not q.strip():
            raise ValueError(f"{w}: empty query")
        if task == "mol2cap":
            parse_smiles(q, w)
        records.append(Record(row=i, line=i + 1, cid=-1, smiles=q if task == "mol2cap" else "",
                              text=q if task == "cap2mol" else ""))
    report = LoadReport("<queries>", len(records), len(records), {}, {})
    return Split("queries", pathlib.Path("<queries>"), tuple(records), report)


class Predictor:
    """A model in the decoding layout, its tokenizer, a database, a retriever and an evaluation plan."""

    def __init__(self, plan: evaluate.EvalPlan, module, params, tokenizer, database: Split, method: str,
                 num_candidates: int, encoder: str | None, retrieval_seed: int):
        self.plan, self.module, self.params, self.tokenizer = plan, module, params, tokenizer
        self.database, self.method, self.num_candidates = database, method, num_candidates
        self.encoder, self.retrieval_seed = encoder, retrieval_seed

    @property
    def task(self) -> str:
        return self.plan.task

    def __call__(self, queries: Sequence[str], where: Sequence[str] | None = None) -> list[Prediction]:
        if isinstance(queries, str):
            queries = [queries]
        p, task = self.plan, self.plan.task
        qsplit = query_split(task, queries, where)
        if p.zero_shot:
            chosen, scores = [np.zeros(0, np.int64)] * len(queries), [{} for _ in queries]
        else:
            nb = retrieve(task, self.method, self.database, qsplit, k=min(self.num_candidates, len(self.database)),
                          encoder=self.encoder, seed=self.retrieval_seed, progress=False)
            positions = nb.positions(self.database)
            scores = [dict(zip(pos.tolist(), s.tolist())) for pos, s in zip(positions, nb.scores)]
            chosen = context.select_examples(positions, p.selection)  # seeded per query index, as evaluation
        db = context.pairs(self.database)
        tokenize = prompts.tokenize_fn(self.tokenizer)
        ids, used = [], []
        for q, rows in zip(context.pairs(qsplit), chosen):
            prompt, kept, _ = prompts.encode_source(task, q, [db[i] for i in rows], self.tokenizer,
                                                    max_len=p.max_prompt_len, reverse=p.selection.reverse,
                                                    zero_shot=p.zero_shot, tokenize=tokenize)
            ids.append(prompt)
            used.append([int(i) for i in rows[:kept]])
        decoded = evaluate.decode_rows(p, self.module, self.params, self.tokenizer, ids)
        out = []
        for q, prompt, rows, score_of, d in zip(queries, ids, used, scores, decoded):
            examples = tuple(ContextExample(int(self.database.records[r].cid), self.database.records[r].smiles,
                                            self.database.records[r].text, float(score_of.get(r, np.nan)))
                             for r in rows)
            answer = extract_answer(task, d.text, first_line=p.first_line)
            chem = {}
            if task == "cap2mol":
                mol = try_parse(answer)
                chem = dict(valid=mol is not None, canonical=Chem.MolToSmiles(mol) if mol is not None else None,
                            inchikey=inchi_key_of_mol(mol))
            out.append(Prediction(task, q, answer, examples, tuple(int(t) for t in prompt), tuple(d.tokens),
                                  not d.stopped, None if p.generation.greedy else d.seed, **chem))
        return out


def _predictor(cfg: Config, plan: evaluate.EvalPlan, lm_config, tokenizer, mesh, base_params, lora, trainable,
               database: Split) -> Predictor:
    method = context.resolve_method(cfg)
    if method == "files" and not plan.zero_shot:
        raise ValueError("the run read its neighbours from files (retrieval.method='files'); new queries need a "
                         "retriever: predict without --run and pass --method")
    if lora is not None:
        module, params = decoding_layout(build_model(lm_config, lora), base_params, trainable)
    else:
        module, params = decoding_layout(build_model(lm_config), trainable)
    return Predictor(plan, module, params, tokenizer, database, method, cfg.retrieval.num_candidates,
                     cfg.retrieval.encoder_path, cfg.train.seed)


def _budget(workdir: pathlib.Path, cfg: Config, tokenizer, splits: context.Splits) -> int | None:
    """The run's max_new_tokens: set, or as recorded by its evaluation, or derived again from its data."""
    if cfg.eval.max_new_tokens is not None:
        return None
    path = workdir / "eval_test.json"
    if path.is_file():
        recorded = json.loads(path.read_text()).get("decoding", {}).get("max_new_tokens")
        if recorded:
            return int(recorded)
    return evaluate.answer_budget(cfg.data.task, tokenizer, splits.train)


def from_run(workdir: str | pathlib.Path, step: int | None = None, seed: int | None = None) -> Predictor:
    """The run in `workdir` at checkpoint `step` (None: the newest); `seed` replaces its sampling seed."""
    run = export.restore_run(workdir, step)
    cfg = run.config
    splits = context.load_splits(cfg.data)
    plan = evaluate.plan(cfg, _budget(run.workdir, cfg, run.tokenizer, splits))
    if seed is not None:
        plan = dataclasses.replace(plan, generation=dataclasses.replace(plan.generation, seed=seed))
    base = None
    if run.lora is not None:
        key = jax.random.split(jax.random.key(run.config.train.seed))[0]  # the run's init key (the tiny base)
        base = backbone_lib.load_backbone(run.source, run.lm_config, run.tokenizer, run.mesh, key,
                                          lora=None).trainable
    return _predictor(cfg, plan, run.lm_config, run.tokenizer, run.mesh, base, run.lora, run.trainable,
                      splits.database)


def untuned(model: str, database: str | pathlib.Path, task: str, *, n_examples: int = 2, method: str = "auto",
            encoder: str | None = None, decoding: str = "greedy", seed: int = 42,
            max_new_tokens: int | None = None) -> Predictor:
    """In-context learning without tuning: `model` with examples retrieved from the `database` file."""
    lm_config, tokenizer = backbone_lib.describe(model, "float32", "float32")
    d = {"data": {"task": task}, "model": {"name": model}, "selection": {"n_examples": n_examples},
         "retrieval": {"method": method, "encoder_path": encoder}, "train": {"seed": seed},
         "prompt": {"cutoff_len": min(2048, lm_config.max_positions), "zero_shot": n_examples == 0},
         "eval": {"decoding": decoding, "max_new_tokens": max_new_tokens}}
    cfg = config_lib.from_config_dict(d)
    db = load_split(database)
    plan = evaluate.plan(cfg, evaluate.answer_budget(task, tokenizer, db) if max_new_tokens is None else None)
    mesh = make_mesh(1, 1, 1, devices=jax.local_devices()[:1])
    key = jax.random.split(jax.random.key(seed))[0]
    params = backbone_lib.load_backbone(model, lm_config, tokenizer, mesh, key, lora=None).trainable
    return _predictor(cfg, plan, lm_config, tokenizer, mesh, None, None, params, db)


def read_queries(path: str | pathlib.Path, task: str) -> tuple[list[str], list[str]]:
    """(queries, where each came from): a data file (CID, SMILES, description; the task's input column) or
    one query per line."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such input file")
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and "\t" in lines[0]:
        split = load_split(path, strict=True)
        queries = split.smiles if task == "mol2cap" else split.texts
        return queries, [f"{path}:{r.line}" for r in split.records]
    kept = [(i + 1, line.strip()) for i, line in enumerate(lines) if line.strip()]
    return [q for _, q in kept], [f"{path}:{n}" for n, _ in kept]


def predict(queries: str | Sequence[str], *, run: str | pathlib.Path | None = None, step: int | None = None,
            model: str | None = None, database: str | pathlib.Path | None = None, task: str | None = None,
            **untuned_kw) -> list[Prediction]:
    """One call for a notebook: `predict("CCO", run="runs/demo")` or `predict(..., model=, database=, task=)`."""
    if run is not None:
        return from_run(run, step, untuned_kw.get("seed"))(queries)
    if model is None or database is None or task is None:
        raise ValueError("predict: give run=, or model=, database= and task=")
    return untuned(model, database, task, **untuned_kw)(queries)


def format_prediction(pred: Prediction, show_context: bool = False) -> str:
    """Human-readable lines for one prediction."""
    answer = pred.answer or "(empty: nothing after the answer marker)"
    lines = [f"query: {pred.query}", f"answer: {answer}" + (" [cut at max_new_tokens]" if pred.cut else "")]
    if pred.task == "cap2mol":
        lines.append(f"  canonical SMILES: {pred.canonical}  InChIKey: {pred.inchikey}" if pred.valid else
                     "  INVALID: RDKit cannot parse the answer as a molecule")
    if pred.seed is not None:
        lines.append(f"  sampling seed: {pred.seed}")
    if show_context:
        lines.append(f"  context examples in the prompt: {len(pred.context)} (most similar first)")
        for j, ex in enumerate(pred.context, 1):
            lines.append(f"    {j}. score {ex.score:.4f}  CID {ex.cid}  {ex.smiles}  {ex.text}")
    return "\n".join(lines)


def write_predictions(path: str | pathlib.Path, preds: Sequence[Prediction]) -> pathlib.Path:
    """`.jsonl`: one object per prediction (context and tokens included); `.tsv`: one row per prediction."""
    path = pathlib.Path(path)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(p.as_dict()) + "\n" for p in preds))
    elif path.suffix == ".tsv":
        cols = ["input", "output"] + (["valid", "canonical_smiles", "inchikey"] if preds and
                                      preds[0].task == "cap2mol" else [])
        rows = ["\t".join(cols)]
        for p in preds:
            cells = [p.query, p.answer] + ([str(p.valid), p.canonical or "", p.inchikey or ""]
                                           if p.task == "cap2mol" else [])
            rows.append("\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells))
        path.write_text("\n".join(rows) + "\n")
    else:
        raise ValueError(f"--out {path}: the name must end in .tsv or .jsonl")
    return path
