"""The evaluation pass: in-context prompts for the test queries → generation → answers → files + metrics.

Writes `DIR/predictions_<tag>.tsv` (MolT5's layout) and `DIR/eval_<tag>.json` (the metric suite, the
decoding settings, the prompt truncation counts and the metric tokenizer used).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import numpy as np

from icma_jax.config import Config
from icma_jax.data import prompts
from icma_jax.data.batching import pad_prompts
from icma_jax.run.context import pairs, select_examples, selection_config
from icma_jax.data.records import Split
from icma_jax.data.prompts import PromptReport
from icma_jax.eval import metrics as metrics_lib
from icma_jax.eval.answer import extract_answer
from icma_jax.eval.generate import GenerationConfig, decoding_layout, generate_tokens
from icma_jax.models.transformer import build_model
from icma_jax.progress import Stage, track


def _prompt_ids(cfg: Config, database: Split, queries: Split, neighbours, tokenizer, zero_shot: bool, max_len: int):
    """Inference prompts for `queries` (examples selected as in training, seeded apart)."""
    db, queries = pairs(database), pairs(queries)
    chosen = ([[] for _ in queries] if zero_shot
              else select_examples(neighbours[:len(queries)], selection_config(cfg, cfg.train.seed + 1)))
    tokenize = prompts.tokenize_fn(tokenizer)
    report, out = PromptReport(), []
    rows_of = track(zip(queries, chosen), "prompts: evaluation", total=len(queries), unit="prompt",
                    quiet=jax.process_index() != 0)
    for q, rows in rows_of:
        ids, _, rep = prompts.encode_source(cfg.data.task, q, [db[i] for i in rows], tokenizer, max_len=max_len,
                                            reverse=cfg.selection.reverse, zero_shot=zero_shot, tokenize=tokenize)
        out.append(ids)
        report.add(rep)
    return out, report


def generation_config(cfg: Config, seed: int) -> GenerationConfig:
    """The configured decoding (the paper's sampling settings, or greedy)."""
    return GenerationConfig(max_new_tokens=cfg.eval.max_new_tokens, greedy=cfg.eval.decoding == "greedy",
                            temperature=cfg.eval.temperature or 1.0, top_k=cfg.eval.top_k, top_p=cfg.eval.top_p,
                            repetition_penalty=cfg.eval.penalty_for(cfg.data.task), seed=seed)


def generate_answers(cfg: Config, module, params, lora_params, tokenizer, prompt_ids: list[np.ndarray],
                     seed: int) -> list[str]:
    """Extracted answers for every prompt, in order; batches have one fixed shape (one compile).

    Rows past the end of the last batch repeat its first prompt; their outputs are discarded.
    """
    bs = cfg.eval.batch_size
    length = int(np.ceil(max(len(p) for p in prompt_ids) / 64) * 64)  # few distinct shapes across runs
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = tuple(sorted({tokenizer.eos_token_id, *module.config.eos_token_ids} - {None}))
    module, params = decoding_layout(module, params, lora_params)  # one weight copy (LoRA merged), not one per batch
    lora_params = None
    answers = []
    stage = Stage("generation", total=len(prompt_ids), unit="prompt", quiet=jax.process_index() != 0)
    for start in range(0, len(prompt_ids), bs):
        chunk = list(prompt_ids[start:start + bs])
        batch = pad_prompts(chunk + [chunk[0]] * (bs - len(chunk)), length, bs, pad_id)
        out_BxT = generate_tokens(module, params, batch.tokens_BxL, batch.mask_BxL,
                                  generation_config(cfg, seed + start), eos_ids=eos_ids, pad_id=pad_id,
                                  lora_params=lora_params)
        for row in out_BxT[:len(chunk)]:
            ids = row.tolist()
            cut = next((i for i, t in enumerate(ids) if t in eos_ids), len(ids))
            text = tokenizer.decode(ids[:cut], skip_special_tokens=True)
            answers.append(extract_answer(cfg.data.task, text, first_line=cfg.eval.answer_rule == "first_line"))
        stage.update(len(chunk))
    stage.close()
    return answers


def score(cfg: Config, queries: Split, preds: list[str], workdir: pathlib.Path, tag: str,
          report: PromptReport) -> dict[str, Any]:
    """Writes predictions_<tag>.tsv and eval_<tag>.json; returns the metrics."""
    if cfg.data.task == "mol2cap":
        inputs, refs = queries.smiles, queries.texts
        result = metrics_lib.mol2cap_metrics(refs, preds, tokenizer=cfg.eval.metric_tokenizer)
    else:
        inputs, refs = queries.texts, queries.smiles
        result = metrics_lib.cap2mol_metrics(refs, preds)
    if jax.process_index() == 0:
        metrics_lib.write_predictions(workdir / f"predictions_{tag}.tsv", cfg.data.task, inputs, refs, preds)
        doc = {"task": cfg.data.task, "dataset": cfg.data.dataset, "split": queries.name, "rows": len(preds),
               "metrics": result, "decoding": dataclasses.asdict(cfg.eval),
               "metric_tokenizer": cfg.eval.metric_tokenizer, "prompts": dataclasses.asdict(report)}
        (workdir / f"eval_{tag}.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    return result


def evaluate_split(cfg: Config, backbone, trainable, database: Split, queries: Split, neighbours,
                   workdir: pathlib.Path, tag: str = "test") -> dict[str, Any]:
    """In-context evaluation of the tuned model on `queries` (neighbours: database positions per query)."""
    max_len = cfg.prompt.cutoff_len - cfg.eval.max_new_tokens
    ids, report = _prompt_ids(cfg, database, queries, neighbours, backbone.tokenizer, cfg.prompt.zero_shot, max_len)
    params, lora = (backbone.base, trainable) if cfg.model.finetune == "lora" else (trainable, None)
    preds = generate_answers(cfg, backbone.module, params, lora, backbone.tokenizer, ids, cfg.train.seed)
    return score(cfg, queries, preds, workdir, tag, report)


def evaluate_zero_shot(cfg: Config, queries: Split, workdir: pathlib.Path, backbone, base_params) -> dict[str, Any]:
    """The untuned model with ICMA's zero-shot prompt on the same molecules (the baseline)."""
    max_len = cfg.prompt.cutoff_len - cfg.eval.max_new_tokens
    ids, report = _prompt_ids(cfg, queries, queries, None, backbone.tokenizer, True, max_len)
    module = build_model(backbone.lm_config)
    preds = generate_answers(cfg, module, base_params, None, backbone.tokenizer, ids, cfg.train.seed)
    return score(cfg, queries, preds, workdir, "test_zero_shot", report)


def results_table(results: dict[str, dict[str, Any]], task: str) -> str:
    """A plain-text table: one row per numeric metric, one column per system ("-" where not computed)."""
    names = list(results)
    keys = [k for k, v in results[names[0]].items() if v is None or isinstance(v, (int, float))
            and not isinstance(v, bool) and not k.startswith("n")]

    def cell(v) -> str:
        return f"{'-':>14}" if v is None else f"{float(v):>14.4f}"

    head = f"{'metric (' + task + ')':<24}" + "".join(f"{n:>14}" for n in names)
    lines = [head, "-" * len(head)]
    lines += [f"{k:<24}" + "".join(cell(results[n].get(k)) for n in names) for k in keys]
    return "\n".join(lines)
