"""`train_and_evaluate(config, workdir)`: ICMA's In-Context Molecule Tuning from data files to metrics.

Reads as the run does: validate config → load data → model → neighbours → prompts → bucketed batches →
train (resuming from DIR/checkpoints) → generate for the test split → predictions and metrics. Every
user-facing check (config keys, data files, model vs cutoff) happens before anything is compiled.
Re-running the same command with the same DIR resumes; a run killed at any point continues with the
same per-step losses, because the RNG, the state and the data-iterator position are checkpointed and
everything else (neighbours, selections, prompts) is a deterministic function of the config.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import jax
import ml_collections
import numpy as np

from icma_jax import config as config_lib, distributed
from icma_jax.config import Config
from icma_jax.data.batching import BatchIterator, loss_window
from icma_jax.models import LoraConfig
from icma_jax.run import backbone as backbone_lib, context, evaluate, export, outputs
from icma_jax.run.run_log import RunLog, count_summary
from icma_jax.sharding import make_mesh
from icma_jax.training.checkpoint import Checkpointer, abstract_state
from icma_jax.training.optim import make_optimizer
from icma_jax.training.state import create_state
from icma_jax.training.step import StepConfig, check_finite, device_put_batch, host_rows, make_train_step, process_rows

ROW_TRACE_ENV = "ICMA_ROW_TRACE"  # tests: each process appends the global rows it fed to $ICMA_ROW_TRACE.<index>


class Stopped(Exception):
    """SIGTERM (preemption, requeue): a checkpoint was saved at `step`; the same command resumes."""

    def __init__(self, step: int):
        super().__init__(f"stopped by SIGTERM after step {step}: checkpoint saved, run the same command to resume")
        self.step = step


def _log(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


def _write_config(workdir: pathlib.Path, cfg: Config) -> None:
    """DIR/config.json; a different config in an existing run directory is an error (resume would mix them)."""
    path, new = workdir / "config.json", config_lib.to_dict(cfg)
    if path.is_file():
        old = json.loads(path.read_text())
        try:
            config_lib.from_config_dict(old)
        except ValueError as e:  # e.g. a key removed or a value respelled since the run began
            raise ValueError(f"{path} was written in older config spellings and cannot be resumed ({e}); "
                             "use a new --workdir") from None
        if json.loads(json.dumps(new)) != old:
            diff = sorted(f"{g}.{k}" for g in new for k in new[g] if old.get(g, {}).get(k) != json.loads(
                json.dumps(new[g][k])))
            raise ValueError(f"{path} holds a different config (fields {', '.join(diff)}); use a new --workdir "
                             "or the same config to resume")
    elif outputs.is_writer():
        outputs.write_text(path, json.dumps(new, indent=2) + "\n")


def _check_fits(cfg: Config, lm_config, mesh, n_seqs: int, total_steps: int) -> None:
    """Model length, batch divisibility and schedule checks — all before anything is compiled."""
    need = max(cfg.prompt.cutoff_len, cfg.train.buckets[-1])
    if lm_config.max_positions < need:
        raise ValueError(f"model {cfg.model.name} has {lm_config.max_positions} positions but "
                         f"prompt.cutoff_len / train.buckets need {need}: lower --config.prompt.cutoff_len")
    if cfg.train.pack_length is not None and cfg.train.pack_length < cfg.prompt.cutoff_len:
        raise ValueError(f"train.pack_length={cfg.train.pack_length} is shorter than prompt.cutoff_len="
                         f"{cfg.prompt.cutoff_len}: a sequence would not fit a packed row")
    split = cfg.train.grad_accum * mesh.shape["data"] * mesh.shape["fsdp"]
    if cfg.train.batch_size % split or cfg.train.batch_size % jax.process_count():
        raise ValueError(f"train.batch_size={cfg.train.batch_size} must divide by grad_accum × data × fsdp = "
                         f"{split} and by the {jax.process_count()} processes")
    if n_seqs == 0:
        raise ValueError("no training queries: check data.train_split / data.train_limit")
    if cfg.train.warmup_steps > total_steps:
        raise ValueError(f"train.warmup_steps={cfg.train.warmup_steps} exceeds the run's {total_steps} steps")


def _check_inputs_agree(seqs, nb: context.RunNeighbours) -> None:
    """Every process built the neighbours and training sequences itself: they must be identical."""
    arrays = [a for s in seqs for a in (s.ids, s.labels)]
    for group in (nb.train, nb.test, nb.valid or []):
        arrays += [np.asarray(a, np.int64) for a in group]
    distributed.check_same_everywhere("neighbours or training prompts", distributed.digest(arrays))


def _trace_rows(step: int, rows: np.ndarray) -> None:
    path = os.environ.get(ROW_TRACE_ENV)
    if path:
        with open(f"{path}.{jax.process_index()}", "a") as f:
            f.write(json.dumps({"step": step, "rows": rows.tolist()}) + "\n")


def train_and_evaluate(config: Config | ml_collections.ConfigDict | dict, workdir: str | os.PathLike) -> dict:
    """Runs (or resumes) a whole ICMA run in `workdir`; returns the test metrics (and the zero-shot ones)."""
    cfg = config if isinstance(config, Config) else config_lib.from_config_dict(config)
    distributed.initialize(cfg.mesh.heartbeat_timeout_s)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _write_config(workdir, cfg)
    splits = context.load_splits(cfg.data, cfg.train.eval_subset if cfg.train.eval_every else 0)
    for summary in dict.fromkeys(s.report.summary() for s in (splits.database, splits.train, splits.test,
                                                               splits.valid) if s is not None):
        _log(summary)

    mesh = make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)
    source = cfg.model.path or cfg.model.name
    lm_config, tokenizer = backbone_lib.describe(source, cfg.model.compute_dtype, cfg.model.param_dtype)
    lm_config = lm_config.replace(attention=cfg.model.attention)
    derived = cfg.eval.max_new_tokens is None
    eval_plan = evaluate.plan(cfg, evaluate.answer_budget(cfg.data.task, tokenizer, splits.train) if derived else None)
    if derived:
        _log(f"eval.max_new_tokens = {eval_plan.generation.max_new_tokens} (99th percentile of the training "
             "answers' token counts + 10%)")
    nb = context.neighbours_for_run(cfg, splits, workdir)
    seqs_for_epoch = _sequences(cfg, splits, nb.train, tokenizer)
    seqs, report = seqs_for_epoch(0)
    _log(f"training prompts: {report.summary()}")
    _check_inputs_agree(seqs, nb)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    iterator = BatchIterator(seqs, batch_size=cfg.train.batch_size, buckets=cfg.train.buckets, pad_id=pad_id,
                             seed=cfg.train.seed, seqs_for_epoch=(lambda e: seqs_for_epoch(e)[0])
                             if cfg.selection.resample_each_epoch else None, pack_length=cfg.train.pack_length or 0)
    total = cfg.train.max_steps or cfg.train.epochs * iterator.batches_per_epoch
    _check_fits(cfg, lm_config, mesh, len(seqs), total)
    layout = (f"packed into rows of {cfg.train.pack_length}" if cfg.train.pack_length
              else f"in buckets {iterator.bucket_counts()}")
    _log(f"{len(seqs)} sequences {layout} ({iterator.real_share():.0%} of the computed positions real); "
         f"{iterator.batches_per_epoch} batches per epoch; {total} steps")

    init_key, dropout_key = jax.random.split(jax.random.key(cfg.train.seed))
    lora = (LoraConfig.for_family(lm_config.family, rank=cfg.model.lora_rank, alpha=cfg.model.lora_alpha,
                                  dropout=cfg.model.lora_dropout) if cfg.model.finetune == "lora" else None)
    backbone = backbone_lib.load_backbone(source, lm_config, tokenizer, mesh, init_key, lora=lora,
                                          remat=cfg.model.remat)
    n_trainable = int(sum(x.size for x in jax.tree.leaves(backbone.trainable)))
    n_total = backbone.n_params + (n_trainable if cfg.model.finetune == "lora" else 0)
    _log(count_summary(n_total, n_trainable))

    optimizer = make_optimizer(cfg.train.lr, cfg.train.warmup_steps, total, cfg.train.b1, cfg.train.b2,
                               cfg.train.eps, cfg.train.weight_decay, cfg.train.clip_norm)
    state, state_sharding = create_state(backbone.trainable, optimizer, backbone.trainable_sharding)
    if jax.process_count() > 1:
        leaves = jax.tree.leaves((backbone.trainable, backbone.base))
        shardings = jax.tree.leaves((backbone.trainable_sharding, backbone.base_sharding))
        n_split = sum(distributed.split_across_processes(s, x.shape) for x, s in zip(leaves, shardings))
        _log(f"{jax.process_count()} processes; {n_split} of {len(leaves)} parameter arrays are split across them")
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=cfg.train.keep_checkpoints)
    rng = dropout_key
    if ckpt.latest_step() is not None:
        state, rng, data_pos = ckpt.restore(abstract_state(state, state_sharding))
        iterator.restore(data_pos)
        _log(f"resumed from {ckpt.directory}/{int(state.step)} (data position {data_pos})")
    step_fn = make_train_step(backbone.module.apply, optimizer, mesh, state_sharding, backbone.base_sharding,
                              StepConfig(mode=cfg.model.finetune, accum_steps=cfg.train.grad_accum,
                                         cast_weights_to=None, dropout=True,
                                         loss_normalization=cfg.train.loss_normalization))

    start = int(state.step)
    log = RunLog(workdir, total_steps=total, start_step=start)
    pending, t_last = None, time.time()
    stop = distributed.StopRequest()

    def flush(pending) -> None:
        step, metrics, t0 = pending
        metrics = jax.device_get(metrics)
        check_finite(metrics, step)
        dt = max(time.time() - t0, 1e-9)
        log.step(step, {"loss": metrics["loss"], "lr": metrics["lr"], "grad_norm": metrics["grad_norm"],
                        "label_tokens": metrics["n_tokens"],
                        "tokens_per_s": float(metrics["tokens_total"]) / dt})  # non-padding tokens per second

    try:
        for step in range(start + 1, total + 1):
            batch = loss_window(next(iterator))  # the same W on every host: decided on the global batch
            n_tokens_total = int((batch.segment_ids_BxL > 0).sum())  # packed rows hold ids 1, 2, ...
            _trace_rows(step, process_rows(mesh, batch.tokens_BxL.shape[0]))
            state, metrics = step_fn(state, backbone.base, device_put_batch(host_rows(batch, mesh), mesh), rng)
            metrics = {**metrics, "tokens_total": n_tokens_total}
            if pending is not None:  # fetch step N-1 after dispatching step N (async dispatch)
                flush(pending)
            pending, t_last = (step, metrics, t_last), time.time()
            stopping = stop.reached(step)
            if step % cfg.train.checkpoint_every == 0 or step == total or stopping:
                flush(pending)  # never checkpoint a state whose loss was not finite
                pending = None
                ckpt.save(step, state, rng, iterator.state(), force=True)
            if stopping:
                raise Stopped(step)
            if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step != total:
                res = evaluate.evaluate_split(eval_plan, backbone, state.trainable, splits.database, splits.valid,
                                              nb.valid, workdir, tag=f"valid_step{step}")
                log.scalars("eval", step, res)
        if pending is not None:
            flush(pending)
    finally:
        stop.close()
        ckpt.wait_until_finished()
        ckpt.close()
        log.finish()

    if lora is not None and cfg.train.export_adapter and outputs.is_writer():  # after the last checkpoint committed
        done = export.RestoredRun(workdir, cfg, int(export.host_tree(state.step)), lm_config, tokenizer, lora,
                                  state.trainable, mesh)
        out = export.write_adapter(done, workdir / "export")
        _log(f"LoRA adapter (PEFT) written to {out}")
    results = {}
    if not cfg.eval.skip:
        results["test"] = evaluate.evaluate_split(eval_plan, backbone, state.trainable, splits.database, splits.test,
                                                  nb.test, workdir)
        if not eval_plan.zero_shot:
            results["retrieval_copy"] = evaluate.evaluate_retrieval_copy(eval_plan, splits.database, splits.test,
                                                                         nb.test, workdir)
        untuned = backbone.base if cfg.model.finetune == "lora" else backbone.trainable  # never donated
        if cfg.eval.zero_shot_baseline:
            results["zero_shot"] = evaluate.evaluate_zero_shot(eval_plan, splits.test, workdir, backbone, untuned)
        if cfg.eval.in_context_baseline and not eval_plan.zero_shot:
            results["icl_untuned"] = evaluate.evaluate_in_context_untuned(eval_plan, backbone, untuned, splits.database,
                                                                          splits.test, nb.test, workdir)
        _log(evaluate.results_table(results, cfg.data.task))
    return results


def _sequences(cfg: Config, splits: context.Splits, neighbours: list[np.ndarray], tokenizer):
    """epoch -> (training sequences, truncation report); selections are seeded by (seed, epoch)."""
    cache: dict[int, tuple] = {}
    selection = context.selection_config(cfg, cfg.train.seed)

    def for_epoch(epoch: int):
        key = epoch if cfg.selection.resample_each_epoch else 0
        if key not in cache:
            chosen = ([np.zeros(0, np.int64)] * len(splits.train) if cfg.prompt.zero_shot
                      else context.select_examples(neighbours, selection, key))
            cache.clear()
            cache[key] = context.training_sequences(cfg, splits, chosen, tokenizer)
        return cache[key]

    return for_epoch
