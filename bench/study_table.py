"""The study's tables and chart: every variant's metrics (trained variants pooled over seeds), the difference
against ICMT with a paired bootstrap interval over the test molecules, and what each variant trained on."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from icma_jax.config import Config
from icma_jax.eval.bootstrap import paired_difference, resample_counts
from icma_jax.eval.example_stats import example_stats
from icma_jax.eval.predictions import read_predictions
from icma_jax.eval.wordpiece import load_text_tokenizer
from study_variants import REFERENCE, Variant

LABELS = {"mol2cap": {"bleu2": "BLEU-2", "bleu4": "BLEU-4", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2",
                      "rougeL": "ROUGE-L", "meteor": "METEOR"},
          "cap2mol": {"bleu": "BLEU", "exact_match": "Exact", "levenshtein": "Levenshtein (lower better)",
                      "validity": "Validity", "maccs_fts": "MACCS FTS", "rdk_fts": "RDK FTS",
                      "morgan_fts": "Morgan FTS"}}


def _folders(workdir: pathlib.Path, v: Variant, seeds: list[int]) -> list[pathlib.Path]:
    runs = workdir / "runs" / v.slug
    return [runs / f"seed{s}" for s in (seeds if v.trained else seeds[:1])]


def _fmt(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _signed(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:+.3f}"


def write_tables(workdir: pathlib.Path, cfg: Config, variants: list[Variant], seeds: list[int], *,
                 resamples: int, level: float) -> str:
    """Writes DIR/study.md and DIR/study.png from the variants' prediction files; returns the markdown."""
    task = cfg.data.task
    keys = list(LABELS[task])
    tok = load_text_tokenizer(cfg.eval.metric_tokenizer) if task == "mol2cap" else None
    stats, per_seed, info, refs = {}, {}, {}, None
    for v in variants:
        pooled, values, n_cut, n_rows, dropped_eval = None, [], 0, 0, 0
        for folder in _folders(workdir, v, seeds):
            preds = read_predictions(folder / f"predictions_{v.tag}.tsv")
            if refs is None:
                refs = (preds.inputs, preds.refs)
            elif (preds.inputs, preds.refs) != refs:
                raise ValueError(f"{folder}/predictions_{v.tag}.tsv holds other test molecules than "
                                 f"{REFERENCE}'s: the study compares the same molecules only")
            s = example_stats(task, preds.refs, preds.outputs, tok)
            values.append({k: s[k].value() for k in keys})
            pooled = s if pooled is None else {k: pooled[k].pooled(s[k]) for k in keys}
            doc = json.loads((folder / f"eval_{v.tag}.json").read_text())
            n_cut += doc["metrics"].get("n_cut") or 0
            n_rows += doc["rows"]
            dropped_eval += doc["prompts"]["examples_dropped"]
        stats[v.name], per_seed[v.name] = pooled, values
        trained = ([json.loads((f / "study_result.json").read_text()) for f in _folders(workdir, v, seeds)]
                   if v.trained else [])
        info[v.name] = {"n_cut": n_cut, "n_rows": n_rows, "dropped_eval": dropped_eval, "trained": trained,
                        "generated": v.tag != "test_retrieval_copy"}
    n = len(refs[1])
    counts = resample_counts(n, resamples, seed=0)
    ref = stats[REFERENCE]
    diffs = {v.name: {k: paired_difference(ref[k], stats[v.name][k], counts, level) for k in keys}
             for v in variants if v.name != REFERENCE}

    labels = [LABELS[task][k] for k in keys]
    lines = [f"# In-context tuning study: {task}, {cfg.data.dataset}", "",
             f"Model {cfg.model.name} ({cfg.model.finetune}); {cfg.train.max_steps or cfg.train.epochs} "
             f"{'steps' if cfg.train.max_steps else 'epochs'} of {cfg.train.batch_size} training queries per step for "
             f"every trained variant, lr {cfg.train.lr:g}, cutoff {cfg.prompt.cutoff_len}; {n} test molecules "
             f"(data/test_cids.tsv when sampled); seeds {', '.join(map(str, seeds))}; {cfg.eval.decoding} decoding. "
             "Trained variants: one corpus of all seeds' predictions. Differences: variant − ICMT, paired bootstrap "
             f"over the test molecules ({resamples} resamples), {level:.0%} percentile interval.", "",
             "## Scores", "", "| variant | " + " | ".join(labels) + " | cut by max_new_tokens |",
             "|---" * (len(keys) + 2) + "|"]
    for v in variants:
        i = info[v.name]
        cut = f"{i['n_cut']}/{i['n_rows']}" if i["generated"] else "- (no generation)"
        lines.append(f"| {v.name} | " + " | ".join(_fmt(stats[v.name][k].value()) for k in keys) + f" | {cut} |")
    lines += ["", f"## Difference against {REFERENCE} ({level:.0%} interval)", "",
              "| variant | " + " | ".join(labels) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, d in diffs.items():
        lines.append(f"| {name} | " + " | ".join(f"{_signed(d[k].value)} [{_signed(d[k].low)}, {_signed(d[k].high)}]"
                                                 for k in keys) + " |")
    lines += ["", "## What each trained variant trained on (per seed)", "",
              "| variant | seed | steps × queries | tokens | loss tokens | padded positions | context examples dropped "
              "(training; evaluation) |", "|---|---|---|---|---|---|---|"]
    for v in variants:
        for r in info[v.name]["trained"]:
            lines.append(f"| {v.name} | {r['seed']} | {r['steps']} × {r['queries'] // r['steps']} | {r['tokens']:,} | "
                         f"{r['target_tokens']:,} | {r['padded_positions']:,} | {r['examples_dropped']}/"
                         f"{r['examples_requested']}; {info[v.name]['dropped_eval']} |")
    if len(seeds) > 1:
        lines += ["", "## Per seed", "", "| variant | seed | " + " | ".join(labels) + " |",
                  "|---" * (len(keys) + 2) + "|"]
        for v in variants:
            for seed, vals in zip(seeds if v.trained else seeds[:1], per_seed[v.name]):
                lines.append(f"| {v.name} | {seed} | " + " | ".join(_fmt(vals[k]) for k in keys) + " |")
    log = workdir / "study_log.jsonl"
    if log.is_file():
        secs = sum(json.loads(x)["seconds"] for x in log.read_text().splitlines() if x.strip())
        lines += ["", f"Time in the finished variant runs: {secs / 60:.1f} min (study_log.jsonl)."]
    text = "\n".join(lines) + "\n"
    (workdir / "study.md").write_text(text)
    _plot(workdir / "study.png", task, variants, keys, labels, stats, diffs, level)
    return text


def _plot(path: pathlib.Path, task: str, variants, keys, labels, stats, diffs, level: float) -> None:
    """Left: every variant's metrics; right: each difference against ICMT with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.5))
    x, width = np.arange(len(keys)), 0.8 / len(variants)
    colors = plt.get_cmap("tab10").colors
    for j, v in enumerate(variants):
        vals = [stats[v.name][k].value() for k in keys]
        left.bar(x + (j - (len(variants) - 1) / 2) * width, vals, width, label=v.name, color=colors[j % 10])
    others = [v for v in variants if v.name != REFERENCE]
    w2 = 0.8 / max(len(others), 1)
    for j, v in enumerate(others):
        d = diffs[v.name]
        mid = np.array([d[k].value for k in keys])
        err = np.array([[d[k].value - d[k].low for k in keys], [d[k].high - d[k].value for k in keys]])
        right.bar(x + (j - (len(others) - 1) / 2) * w2, mid, w2, yerr=np.nan_to_num(err), capsize=2,
                  color=colors[(j + 1) % 10], label=v.name)
    right.axhline(0.0, color="black", linewidth=0.8)
    for ax, title in ((left, f"{task}: scores"), (right, f"difference against {REFERENCE} ({level:.0%} paired "
                                                         "bootstrap interval)")):
        ax.set_xticks(x, labels, rotation=20)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    left.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
