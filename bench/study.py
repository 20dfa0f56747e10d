"""Does In-Context Molecule Tuning work here? The variants of one study trained and evaluated on the same data,
budget and seeds; `study.md` and `study.png` compare each with ICMT (paired bootstrap over test molecules).

Usage: python bench/study.py --config configs/study.py[:preset,key=value] --workdir runs/study
           [--config.run.<group>.<key>=V ...] [--config.study.<key>=V ...]

DIR/data/         the data root every variant reads: the test molecules drawn (test_cids.tsv), the other splits linked
DIR/encoder/      the GIN trained on the database (Mol2Cap ICMT's retrieval), seeded, reused
DIR/runs/<variant>/seed<S>/   a train_and_evaluate run folder each (resumes on its own); study_result.json = done
DIR/study.md, DIR/study.png, DIR/study_log.jsonl (one line per finished call: variant, seed, seconds)
Rerunning the same command skips finished variants and resumes the unfinished one from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import time

import numpy as np

from icma_jax import config as config_lib
from icma_jax.data.batching import BatchIterator
from icma_jax.data.records import load_split
from icma_jax.data.sources import resolve_data_dir, split_path
from icma_jax.retrieval.graph_knn import save_encoder
from icma_jax.retrieval.train_gin import EncoderTrainConfig, train_encoder
from icma_jax.run import backbone, context, train_and_evaluate

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from study_table import write_tables  # noqa: E402
from study_variants import REFERENCE, check_variants, run_config  # noqa: E402

USAGE = "--config configs/study.py[:preset] --workdir DIR [--config.run.group.key=V] [--config.study.key=V]"
STUDY_KEYS = ("variants", "seeds", "test_sample", "sample_seed", "encoder", "resamples", "level")


def parse(argv: list[str]):
    """(study ConfigDict, workdir) from the flags; overrides are checked against the declared keys first."""
    from absl import flags
    from ml_collections import config_flags

    specs = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    specs += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    if len(specs) != 1:
        raise ValueError(f"exactly one --config is required (usage: {USAGE})")
    loaded = config_lib.load_config_file(specs[0])
    run_keys = set(config_lib.declared_keys())
    for a in argv:
        if a.startswith("--config.") and "=" in a:
            key = a[len("--config."):].split("=", 1)[0]
            group, _, rest = key.partition(".")
            ok = (group == "run" and rest in run_keys) or (group == "study" and rest.split(".")[0] in STUDY_KEYS
                                                           and (rest.split(".")[0] != "encoder" or "." not in rest
                                                                or rest.split(".", 1)[1] in loaded.study.encoder))
            if not ok:
                raise ValueError(f"unknown config key {key} (run.<group>.<key> as in icma_jax/config.py, or "
                                 f"study.<{'|'.join(STUDY_KEYS)}>)")
    rest = [a for i, a in enumerate(argv) if not a.startswith("--config=") and a != "--config"
            and not (i and argv[i - 1] == "--config")]
    values = flags.FlagValues()
    config_flags.DEFINE_config_dict("config", loaded, "the study config", flag_values=values, lock_config=True,
                                    sys_argv=["study", *rest])
    flags.DEFINE_string("workdir", None, "study folder", flag_values=values)
    try:
        extra = values(["study", *rest])
    except flags.Error as e:
        raise ValueError(str(e)) from None
    if len(extra) > 1 or values.workdir is None:
        raise ValueError(f"usage: bench/study.py {USAGE}")
    return values.config, pathlib.Path(values.workdir).absolute()


def prepare_data(run: dict, study, workdir: pathlib.Path) -> pathlib.Path:
    """DIR/data: the sampled test split (its CIDs and source lines in test_cids.tsv), links to the other splits."""
    d = run["data"]
    src_root, root = resolve_data_dir(d["data_dir"]), workdir / "data"
    test = split_path(d["dataset"], d["test_split"], d["data_dir"])
    if study.test_sample and d["test_split"] in (d["database_split"], d["train_split"]):
        raise ValueError("config field study.test_sample: the test split must differ from the database and training "
                         "splits when it is sampled")
    for split in {d["database_split"], d["train_split"], d["test_split"]}:
        src = split_path(d["dataset"], split, d["data_dir"])
        dst = root / src.relative_to(src_root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src == test and study.test_sample:
            _write_sample(src, dst, study.test_sample, study.sample_seed, root / "test_cids.tsv")
        elif not dst.exists():
            os.symlink(src.resolve(), dst)
    return root


def _write_sample(src: pathlib.Path, dst: pathlib.Path, k: int, seed: int, cids: pathlib.Path) -> None:
    """`k` rows of `src` drawn with `seed`, in file order, header kept; the same draw on every rerun."""
    split = load_split(src)
    if k > len(split):
        raise ValueError(f"config field study.test_sample={k} exceeds the {len(split)} rows of {src}")
    rows = sorted(np.random.default_rng(seed).choice(len(split), size=k, replace=False).tolist())
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    text = lines[0] + "".join(lines[split.records[i].line - 1] for i in rows)
    if dst.exists():
        if dst.read_text(encoding="utf-8") != text:
            raise ValueError(f"{dst} holds another sample of {src}: use a new --workdir or the same study config")
        return
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    cids.write_text("cid\tline\n" + "".join(f"{split.records[i].cid}\t{split.records[i].line}\n" for i in rows))
    os.replace(tmp, dst)


def prepare_encoder(cfg: config_lib.Config, study, workdir: pathlib.Path) -> pathlib.Path:
    """DIR/encoder: the GIN trained on the run's database (seeded); reused when present."""
    out = workdir / "encoder"
    if (out / "encoder.json").is_file():
        return out
    database = context.load_splits(cfg.data).database
    fields = {k: v for k, v in study.encoder.items() if k != "max_steps"}
    enc_cfg = EncoderTrainConfig(**fields)
    res = train_encoder(database.smiles, database.texts, enc_cfg, max_steps=study.encoder.get("max_steps") or None)
    tmp = workdir / "encoder.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_encoder(tmp, res.model, res.variables, res.n_steps,
                 {"config": fields, "database": str(database.path), "n_molecules": res.n_molecules,
                  "steps": res.n_steps, "seconds": round(res.seconds, 1)})
    os.replace(tmp, out)
    print(f"GIN trained on {res.n_molecules} database molecules ({res.n_steps} steps, {res.seconds:.0f} s): {out}",
          flush=True)
    return out


def trained_tokens(cfg: config_lib.Config, workdir: pathlib.Path) -> dict:
    """Tokens a finished run trained on, replayed from its deterministic batch iterator (real tokens and loss
    targets, padding excluded), with the training prompts' truncation report; the targets are checked against
    the label tokens the run logged in metrics.jsonl."""
    splits = context.load_splits(cfg.data)
    _, tokenizer = backbone.describe(cfg.model.path or cfg.model.name, cfg.model.compute_dtype, cfg.model.param_dtype)
    nb = context.neighbours_for_run(cfg, splits, workdir)
    selection = context.selection_config(cfg, cfg.train.seed)

    def sequences(draw: int):
        chosen = ([np.zeros(0, np.int64)] * len(splits.train) if cfg.prompt.zero_shot
                  else context.select_examples(nb.train, selection, draw))
        return context.training_sequences(cfg, splits, chosen, tokenizer)

    seqs, report = sequences(0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    it = BatchIterator(seqs, batch_size=cfg.train.batch_size, buckets=cfg.train.buckets, pad_id=pad_id,
                       seed=cfg.train.seed, pack_length=cfg.train.pack_length or 0,
                       seqs_for_epoch=(lambda e: sequences(e)[0]) if cfg.selection.resample_each_epoch else None)
    steps = cfg.train.max_steps or cfg.train.epochs * it.batches_per_epoch
    tokens = targets = padded = 0
    for _ in range(steps):
        b = next(it)
        tokens += int((b.segment_ids_BxL > 0).sum())
        padded += int(b.segment_ids_BxL.size)
        targets += int((b.targets_BxW != -100).sum())
    logged = sum(int(json.loads(line)["label_tokens"]) for line in (workdir / "metrics.jsonl").read_text().splitlines()
                 if line.strip())
    if logged != targets:
        raise RuntimeError(f"{workdir}: replayed {targets} target tokens but metrics.jsonl logged {logged}")
    return {"steps": steps, "queries": steps * cfg.train.batch_size, "tokens": tokens, "target_tokens": targets,
            "padded_positions": padded, "training_prompts": report.summary(),
            "examples_dropped": report.examples_dropped, "examples_requested": report.examples_requested}


def _check_same_config(vdir: pathlib.Path, cfg: config_lib.Config) -> None:
    """A finished variant counts only if it ran the config this study would run now."""
    if json.loads((vdir / "config.json").read_text()) != json.loads(json.dumps(config_lib.to_dict(cfg))):
        raise ValueError(f"{vdir} finished with another run config than this study's: use a new --workdir or the "
                         "same study config")


def run_study(study_cfg, workdir: pathlib.Path) -> str:
    """Runs (or resumes) every variant, then writes the tables; returns study.md's text."""
    run = study_cfg.run.to_dict()
    study = study_cfg.study
    cfg = config_lib.from_config_dict(run)  # checks the base run config before anything runs
    variants = check_variants(study.variants, cfg.data.task)
    seeds = [int(s) for s in study.seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"config field study.seeds must be distinct seeds, got {seeds}")
    workdir.mkdir(parents=True, exist_ok=True)
    run["data"]["data_dir"] = str(prepare_data(run, study, workdir))
    run["data"]["test_start"], run["data"]["test_limit"] = 0, None
    needs_gin = cfg.data.task == "mol2cap"
    encoder = prepare_encoder(config_lib.from_config_dict(run), study, workdir) if needs_gin else None
    baselines = {v.name for v in variants if not v.trained}
    for v in (v for v in variants if v.trained):
        for i, seed in enumerate(seeds):
            vdir = workdir / "runs" / v.slug / f"seed{seed}"
            done = vdir / "study_result.json"
            rcfg = config_lib.from_config_dict(run_config(run, v, seed, encoder=encoder,
                                                          baselines=baselines if (v.name == REFERENCE and i == 0)
                                                          else set()))
            if done.is_file():
                _check_same_config(vdir, rcfg)
                print(f"== {v.name}, seed {seed}: finished, skipped ({done})", flush=True)
                continue
            print(f"== {v.name}, seed {seed}: {vdir}", flush=True)
            t0 = time.time()
            results = train_and_evaluate(rcfg, vdir)
            result = {"variant": v.name, "seed": seed, **trained_tokens(rcfg, vdir), "results": results}
            tmp = done.with_name(done.name + ".tmp")
            tmp.write_text(json.dumps(result, indent=1, default=float) + "\n")
            os.replace(tmp, done)
            with open(workdir / "study_log.jsonl", "a") as f:
                f.write(json.dumps({"variant": v.name, "seed": seed, "seconds": round(time.time() - t0, 1)}) + "\n")
    return write_tables(workdir, cfg, variants, seeds, resamples=study.resamples, level=study.level)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        study_cfg, workdir = parse(argv)
        text = run_study(study_cfg, workdir)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"bench/study.py: error: {e}", file=sys.stderr)
        return 2
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
