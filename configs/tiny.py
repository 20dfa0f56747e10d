"""Tiny CPU config for tests: a 2-layer random Llama (d=32) over a character tokenizer, ChEBI-20 slices.

Command: python train.py --config configs/tiny.py --workdir runs/tiny   (needs $ICMA_DATA_DIR)
Hardware: any CPU (tests use 8 fake devices). Time: ~1 minute, mostly compilation.
Expected: loss falls from ~4.6 (uniform over 104 characters); metrics are meaningless (random model).
Cap2Mol with BM25 retrieval from the first 200 validation rows; 16 training queries; 4 test rows.
"""

from icma_jax.config import default_config_dict, parse_arg


def get_config(arg: str | None = None):
    a = parse_arg(arg, task="cap2mol", steps=8)
    c = default_config_dict()
    c.data.dataset, c.data.task = "chebi20", a.task
    c.data.database_split, c.data.train_split, c.data.test_split = "validation", "validation", "test"
    c.data.database_limit, c.data.train_limit, c.data.test_limit = 200, 16, 4
    c.retrieval.method, c.retrieval.num_candidates = "auto", 4
    c.selection.n_examples = 1
    c.prompt.cutoff_len = 768
    c.model.name, c.model.finetune = "tiny", "full"
    c.train.lr, c.train.warmup_steps, c.train.epochs, c.train.max_steps = 3e-3, 2, 0, a.steps
    c.train.batch_size, c.train.grad_accum, c.train.buckets = 8, 1, (768,)  # one bucket: one compile
    c.train.checkpoint_every, c.train.keep_checkpoints = 2, 2
    c.eval.decoding, c.eval.max_new_tokens, c.eval.batch_size = "greedy", 8, 4
    return c
