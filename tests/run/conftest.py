"""A tiny LoRA run over a transformers-format base (written by our exporter, read by transformers too), shared by
the export and predict tests: 3 steps of Cap2Mol on the committed ChEBI-20 slice, greedy evaluation of 4 rows."""

from __future__ import annotations

import pathlib

import jax
import pytest

from icma_jax import config as cfg_lib
from icma_jax.data.char_tokenizer import char_tokenizer
from icma_jax.models.hf_weights import save_hf_checkpoint
from icma_jax.run import train_and_evaluate
from icma_jax.run.backbone import load_backbone, tiny_lm_config
from icma_jax.sharding import make_mesh

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> pathlib.Path:
    """A random 2-layer Llama over the character tokenizer as a transformers directory (config, safetensors,
    tokenizer.json)."""
    tok = char_tokenizer()
    lm_config = tiny_lm_config(len(tok))
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    params = load_backbone("tiny", lm_config, tok, mesh, jax.random.key(7), lora=None).trainable
    params = jax.tree.map(lambda x: 3.0 * x if x.ndim > 1 else x, params)  # decisive logits: no near-ties in argmax
    return save_hf_checkpoint(tmp_path_factory.mktemp("base") / "tiny-llama", params, lm_config, tok)


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, tiny_base, chebi_slice) -> pathlib.Path:
    """DIR of a finished tiny LoRA run (checkpoints at steps 2 and 3, DIR/export, predictions_test.tsv)."""
    d = cfg_lib.load_config_file(str(REPO / "configs" / "tiny.py")).to_dict()
    d["data"].update(data_dir=str(chebi_slice), database_limit=40)
    d["model"].update(path=str(tiny_base), finetune="lora", lora_rank=4, lora_alpha=8.0, lora_dropout=0.0)
    d["train"].update(max_steps=3, lr=3e-2, warmup_steps=1, checkpoint_every=2)
    workdir = tmp_path_factory.mktemp("lora_run")
    train_and_evaluate(d, workdir)
    return workdir
