"""The evaluation pass: in-context prompts for the test queries → generation → answers → files + metrics.

Writes `DIR/predictions_<tag>.tsv` (MolT5's layout) and `DIR/eval_<tag>.json` (the metric suite, the
decoding settings, the prompt truncation counts and the metric tokenizer used). The run config is read once,
by `plan`; everything after it works from the `EvalPlan` and the libraries' own configs.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, NamedTuple

import jax
import numpy as np

from icma_jax.config import Config
from icma_jax.data import prompts
from icma_jax.data.batching import pad_prompts
from icma_jax.data.prompts import PromptReport
from icma_jax.data.records import Split
from icma_jax.eval import baselines
from icma_jax.eval import metrics as metrics_lib
from icma_jax.eval.answer import extract_answer
from icma_jax.eval.generate import (GenerationConfig, cut_at_eos, decoding_layout, generate_tokens,
                                    length_batches)
from icma_jax.models.transformer import build_model
from icma_jax.progress import Stage, track
from icma_jax.retrieval import SelectionConfig
from icma_jax.run import outputs
from icma_jax.run.context import pairs, select_examples, selection_config


@dataclasses.dataclass(frozen=True)
class EvalPlan:
    """What evaluation needs of the run config."""

    task: str
    dataset: str
    selection: SelectionConfig  # seeded apart from training's selections
    zero_shot: bool
    max_prompt_len: int  # prompt tokens kept: the cutoff minus the answer's room
    generation: GenerationConfig  # its seed is offset by each batch's first row
    batch_size: int
    first_line: bool  # answer rule: the first line after the first marker (else the original's last marker)
    metric_tokenizer: str
    lora: bool  # the trainable tree holds adapters over the frozen base
    decoding: tuple[tuple[str, Any], ...]  # the eval.* keys, recorded in eval_<tag>.json


def answer_budget(task: str, tokenizer, answers_from: Split) -> int:
    """`max_new_tokens` from the data: `baselines.token_budget` of the answers' token counts (+ EOS)."""
    answers = answers_from.texts if task == "mol2cap" else answers_from.smiles
    ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    return baselines.token_budget([len(x) + 1 for x in ids])


def plan(cfg: Config, max_new_tokens: int | None = None) -> EvalPlan:
    """The evaluation settings of run config `cfg` (the paper's sampling settings, or greedy);
    `max_new_tokens` is used where `eval.max_new_tokens` is None (see `answer_budget`)."""
    e = cfg.eval
    budget = e.max_new_tokens if e.max_new_tokens is not None else max_new_tokens
    if budget is None:
        raise ValueError("config field eval.max_new_tokens is None (derived from the data) and no budget was given")
    e = dataclasses.replace(e, max_new_tokens=budget)
    gen = GenerationConfig(max_new_tokens=e.max_new_tokens, greedy=e.decoding == "greedy",
                           temperature=e.temperature or 1.0, top_k=e.top_k, top_p=e.top_p,
                           repetition_penalty=e.penalty_for(cfg.data.task), seed=cfg.train.seed)
    return EvalPlan(task=cfg.data.task, dataset=cfg.data.dataset, selection=selection_config(cfg, cfg.train.seed + 1),
                    zero_shot=cfg.prompt.zero_shot, max_prompt_len=cfg.prompt.cutoff_len - e.max_new_tokens,
                    generation=gen, batch_size=e.batch_size, first_line=e.answer_rule == "first_line",
                    metric_tokenizer=e.metric_tokenizer, lora=cfg.model.finetune == "lora",
                    decoding=tuple(dataclasses.asdict(e).items()))


def _prompt_ids(p: EvalPlan, database: Split, queries: Split, neighbours, tokenizer, zero_shot: bool):
    """Inference prompts for `queries` (examples selected as in training, seeded apart)."""
    db, queries = pairs(database), pairs(queries)
    chosen = [[] for _ in queries] if zero_shot else select_examples(neighbours[:len(queries)], p.selection)
    tokenize = prompts.tokenize_fn(tokenizer)
    report, out = PromptReport(), []
    rows_of = track(zip(queries, chosen), "prompts: evaluation", total=len(queries), unit="prompt",
                    quiet=jax.process_index() != 0)
    for q, rows in rows_of:
        ids, _, rep = prompts.encode_source(p.task, q, [db[i] for i in rows], tokenizer, max_len=p.max_prompt_len,
                                            reverse=p.selection.reverse, zero_shot=zero_shot, tokenize=tokenize)
        out.append(ids)
        report.add(rep)
    return out, report


class Decoded(NamedTuple):
    """One prompt's continuation: new token ids up to EOS, their text, whether EOS ended them, and the
    sampling seed of its batch."""

    tokens: list[int]
    text: str
    stopped: bool
    seed: int


def generate_answers(p: EvalPlan, module, params, lora_params, tokenizer, prompt_ids: list[np.ndarray]
                     ) -> tuple[list[str], int]:
    """Extracted answers for every prompt, in order, and how many of them `max_new_tokens` cut
    (`baselines.answer_cut`)."""
    module, params = decoding_layout(module, params, lora_params)  # one weight copy (LoRA merged), not one per batch
    answers, n_cut = [], 0
    for d in decode_rows(p, module, params, tokenizer, prompt_ids):
        answers.append(extract_answer(p.task, d.text, first_line=p.first_line))
        n_cut += baselines.answer_cut(p.task, d.text, stopped=d.stopped, first_line=p.first_line)
    return answers, n_cut


def decode_rows(p: EvalPlan, module, params, tokenizer, prompt_ids: list[np.ndarray]) -> list[Decoded]:
    """Every prompt's `Decoded`, in the order given; `module, params` in `decoding_layout`. Prompts are
    batched longest first, each batch padded to its own `prompt_bucket` (one compile per bucket); batch k of
    that order samples with the plan's seed + k * batch_size. Rows past the end of the last batch repeat its
    first prompt; their outputs are discarded."""
    bs = p.batch_size
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = tuple(sorted({tokenizer.eos_token_id, *module.config.eos_token_ids} - {None}))
    out: list[Decoded | None] = [None] * len(prompt_ids)
    stage = Stage("generation", total=len(prompt_ids), unit="prompt", quiet=jax.process_index() != 0)
    for k, (rows, length) in enumerate(length_batches([len(ids) for ids in prompt_ids], bs)):
        chunk = [prompt_ids[r] for r in rows]
        batch = pad_prompts(chunk + [chunk[0]] * (bs - len(chunk)), length, bs, pad_id)
        gen = dataclasses.replace(p.generation, seed=p.generation.seed + k * bs)
        out_BxU = generate_tokens(module, params, batch.tokens_BxL, batch.segment_ids_BxL, gen, eos_ids=eos_ids,
                                  pad_id=pad_id)
        for r, row in zip(rows, out_BxU):
            tokens, stopped = cut_at_eos(row, eos_ids)
            out[r] = Decoded(tokens, tokenizer.decode(tokens, skip_special_tokens=True), stopped, gen.seed)
        stage.update(len(chunk))
    stage.close()
    return out


def score(p: EvalPlan, queries: Split, preds: list[str], workdir: pathlib.Path, tag: str,
          report: PromptReport, n_cut: int | None = None) -> dict[str, Any]:
    """Writes predictions_<tag>.tsv and eval_<tag>.json; returns the metrics, with `n_cut` (answers cut by
    max_new_tokens; None when nothing was generated)."""
    if p.task == "mol2cap":
        inputs, refs = queries.smiles, queries.texts
        result = metrics_lib.mol2cap_metrics(refs, preds, tokenizer=p.metric_tokenizer)
    else:
        inputs, refs = queries.texts, queries.smiles
        result = metrics_lib.cap2mol_metrics(refs, preds)
    result["n_cut"] = n_cut
    if outputs.is_writer():  # every process decoded every row (jointly): one writes
        with outputs.atomic_path(workdir / f"predictions_{tag}.tsv") as tmp:
            metrics_lib.write_predictions(tmp, p.task, inputs, refs, preds)
        doc = {"task": p.task, "dataset": p.dataset, "split": queries.name, "rows": len(preds),
               "metrics": result, "decoding": dict(p.decoding),
               "metric_tokenizer": p.metric_tokenizer, "prompts": dataclasses.asdict(report)}
        outputs.write_text(workdir / f"eval_{tag}.json", json.dumps(doc, indent=2, default=float) + "\n")
    return result


def evaluate_split(p: EvalPlan, backbone, trainable, database: Split, queries: Split, neighbours,
                   workdir: pathlib.Path, tag: str = "test") -> dict[str, Any]:
    """In-context evaluation of the tuned model on `queries` (neighbours: database positions per query)."""
    ids, report = _prompt_ids(p, database, queries, neighbours, backbone.tokenizer, p.zero_shot)
    params, lora = (backbone.base, trainable) if p.lora else (trainable, None)
    preds, n_cut = generate_answers(p, backbone.module, params, lora, backbone.tokenizer, ids)
    return score(p, queries, preds, workdir, tag, report, n_cut)


def evaluate_zero_shot(p: EvalPlan, queries: Split, workdir: pathlib.Path, backbone, base_params) -> dict[str, Any]:
    """The untuned model with ICMA's zero-shot prompt on the same molecules (the baseline)."""
    ids, report = _prompt_ids(p, queries, queries, None, backbone.tokenizer, True)
    preds, n_cut = generate_answers(p, build_model(backbone.lm_config), base_params, None, backbone.tokenizer, ids)
    return score(p, queries, preds, workdir, "test_zero_shot", report, n_cut)


def evaluate_in_context_untuned(p: EvalPlan, backbone, base_params, database: Split, queries: Split, neighbours,
                                workdir: pathlib.Path) -> dict[str, Any]:
    """The untuned model with the tuned model's in-context prompts: in-context learning without tuning."""
    ids, report = _prompt_ids(p, database, queries, neighbours, backbone.tokenizer, p.zero_shot)
    preds, n_cut = generate_answers(p, build_model(backbone.lm_config), base_params, None, backbone.tokenizer, ids)
    return score(p, queries, preds, workdir, "test_in_context_untuned", report, n_cut)


def evaluate_retrieval_copy(p: EvalPlan, database: Split, queries: Split, neighbours, workdir: pathlib.Path
                            ) -> dict[str, Any]:
    """The top-ranked retrieved example's answer as the prediction: what retrieval alone scores."""
    answers = database.texts if p.task == "mol2cap" else database.smiles
    preds = baselines.retrieval_copy(neighbours[:len(queries)], answers)
    return score(p, queries, preds, workdir, "test_retrieval_copy", PromptReport(prompts=len(preds)))


def results_table(results: dict[str, dict[str, Any]], task: str) -> str:
    """A plain-text table: one row per numeric metric, one column per system ("-" where not computed)."""
    names = list(results)
    keys = [k for k, v in results[names[0]].items() if v is None or isinstance(v, (int, float))
            and not isinstance(v, bool) and not k.startswith("n")]

    def cell(v) -> str:
        return f"{'-':>16}" if v is None else f"{float(v):>16.4f}"

    def count(v) -> str:
        return f"{'-':>16}" if v is None else f"{int(v):>16d}"

    head = f"{'metric (' + task + ')':<24}" + "".join(f"{n:>16}" for n in names)
    lines = [head, "-" * len(head)]
    lines += [f"{k:<24}" + "".join(cell(results[n].get(k)) for n in names) for k in keys]
    lines.append(f"{'rows':<24}" + "".join(count(results[n].get("n")) for n in names))
    lines.append(f"{'cut at max_new_tokens':<24}" + "".join(count(results[n].get("n_cut")) for n in names))
    return "\n".join(lines)
