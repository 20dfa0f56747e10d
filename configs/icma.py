"""ICMA presets (ICMA_SPEC §5): In-Context Molecule Tuning of one backbone for one task.

Command:
  python train.py --config configs/icma.py:model=galactica-125m,task=mol2cap,dataset=chebi20 --workdir runs/g125m-m2c
  recipe=paper (default): the paper's objective, loss on the answer only, token-mean loss, the settings below;
  recipe=released: as the authors' released run_train.bash runs (docs/PRESETS.md compares them): loss on the
  whole text (--train_on_inputs), their micro-batch (4 / 1 / 2) with the mean of micro-batch means
  (transformers 4.36), right truncation, cutoff 1024 for Galactica-125M Mol2Cap, fp32 for Galactica-1.3B.
  models: galactica-125m (full fine-tune, lr 2e-4, n=2 Mol2Cap / n=4 Cap2Mol),
          galactica-1.3b, mistral-7b (LoRA r32 α64 dropout 0.1, lr 3e-4, n=2; bf16 compute, fp32 adapters);
  tasks: mol2cap, cap2mol; datasets: chebi20, pubchem324k-iupac, pubchem324k-molcap.
Common: cutoff 2048, effective batch 32, AdamW β(0.9, 0.999) ε1e-8 wd 0, clip 1.0, 1,000 warm-up steps
then linear decay, 10 epochs, seed 42; retrieval BM25 over captions (Cap2Mol) and molecule similarity
(Mol2Cap: the Mole-BERT GIN when `retrieval.encoder_path` names its weights, else Morgan fingerprints),
Sequence Reversal, Random Walk p_skip 0.05 for Mol2Cap; paper sampling at evaluation.
Hardware / time (estimates, not measured here): Galactica-125M ≈ 8 h on one A100/H100 for ChEBI-20
(26,407 × 10 epochs); Galactica-1.3B ≈ 1 day; Mistral-7B ≈ 2-3 days on one 80 GB GPU, less on a pod
(`--config.mesh.fsdp=8`). Needs the training split on disk (`icma-jax download chebi20`).
Expected (paper, ChEBI-20 test, Mistral-7B): Mol2Cap BLEU-4 0.581, METEOR 0.661; Cap2Mol EM 0.460,
validity 0.958.
"""

from icma_jax.config import default_config_dict, parse_arg

MODELS = {
    # name: (finetune, lr, gradient-accumulation micro-batches per step of 32, compute dtype)
    "galactica-125m": ("full", 2e-4, 4, "float32"),
    "galactica-1.3b": ("lora", 3e-4, 4, "bfloat16"),
    "mistral-7b": ("lora", 3e-4, 8, "bfloat16"),
}
# The authors' released runs (run_train.bash, ChEBI-20): micro-batch, cutoff per task, compute dtype
# (Mistral: int8 base weights and fp16 there; bf16 here).
RELEASED = {
    "galactica-125m": (4, {"mol2cap": 1024, "cap2mol": 2048}, "float32"),
    "galactica-1.3b": (1, {"mol2cap": 2048, "cap2mol": 2048}, "float32"),
    "mistral-7b": (2, {"mol2cap": 2048, "cap2mol": 2048}, "bfloat16"),
}
RECIPES = ("paper", "released")
# Where the weights come from: a hub id (downloaded once when online) unless --config.model.path names a
# local HF directory or GGUF file.
HUB_IDS = {
    "galactica-125m": "facebook/galactica-125m",
    "galactica-1.3b": "facebook/galactica-1.3b",
    "mistral-7b": "mistralai/Mistral-7B-Instruct-v0.2",
}


def get_config(arg: str | None = None):
    a = parse_arg(arg, model="galactica-125m", task="mol2cap", dataset="chebi20", recipe="paper")
    if a.model not in MODELS:
        raise ValueError(f"unknown preset model {a.model!r}; choose one of {', '.join(MODELS)}")
    if a.recipe not in RECIPES:
        raise ValueError(f"unknown recipe {a.recipe!r}; choose one of {', '.join(RECIPES)}")
    finetune, lr, grad_accum, compute_dtype = MODELS[a.model]
    c = default_config_dict()
    c.data.dataset, c.data.task = a.dataset, a.task
    c.model.name, c.model.finetune = HUB_IDS[a.model], finetune
    c.model.lora_rank, c.model.lora_alpha, c.model.lora_dropout = 32, 64.0, 0.1
    c.model.compute_dtype = compute_dtype
    c.model.param_dtype = "bfloat16" if finetune == "lora" else "float32"
    c.model.remat = a.model != "galactica-125m"
    c.selection.n_examples = 4 if (a.model == "galactica-125m" and a.task == "cap2mol") else 2
    c.selection.strategy = "random_walk" if a.task == "mol2cap" else "top"
    c.selection.p_skip = 0.05 if a.task == "mol2cap" else 0.0
    c.prompt.cutoff_len = 2048
    c.train.lr, c.train.batch_size, c.train.grad_accum = lr, 32, grad_accum
    c.train.warmup_steps, c.train.epochs, c.train.seed = 1000, 10, 42
    c.train.checkpoint_every = 500
    c.eval.decoding = "sample"
    if a.recipe == "released":
        micro, cutoff, compute_dtype = RELEASED[a.model]
        c.prompt.train_on_inputs, c.prompt.truncation, c.prompt.cutoff_len = True, "right", cutoff[a.task]
        c.train.grad_accum, c.train.loss_normalization = 32 // micro, "micro_mean"
        c.model.compute_dtype = compute_dtype
        if compute_dtype == "float32":
            c.model.param_dtype = "float32"
    return c
