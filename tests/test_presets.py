"""configs/icma.py: recipe=paper and recipe=released build valid configs that differ only where
docs/PRESETS.md says the authors' released runs differ from the paper."""

import dataclasses
import pathlib

import pytest

from icma_jax import config as cfg_lib

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
PRESETS_DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "PRESETS.md"
# The keys docs/PRESETS.md lists as "released differs": everything else must be equal.
RELEASED_KEYS = {"prompt.train_on_inputs", "prompt.truncation", "prompt.cutoff_len", "train.grad_accum",
                 "train.loss_normalization", "model.compute_dtype", "model.param_dtype"}
# (micro-batch, cutoff Mol2Cap, cutoff Cap2Mol, compute dtype) of the released runs, from run_train.bash
RELEASED = {"galactica-125m": (4, 1024, 2048, "float32"), "galactica-1.3b": (1, 2048, 2048, "float32"),
            "mistral-7b": (2, 2048, 2048, "bfloat16")}


def _load(arg: str) -> cfg_lib.Config:
    return cfg_lib.from_config_dict(cfg_lib.load_config_file(f"{CONFIGS / 'icma.py'}:{arg}"))


def _flat(c: cfg_lib.Config) -> dict:
    return {f"{group}.{k}": v for group, sub in dataclasses.asdict(c).items() for k, v in sub.items()}


@pytest.mark.parametrize("model", sorted(RELEASED))
@pytest.mark.parametrize("task", ["mol2cap", "cap2mol"])
def test_released_recipe_differs_only_where_documented(model, task):
    paper, released = _load(f"model={model},task={task}"), _load(f"model={model},task={task},recipe=released")
    assert _load(f"model={model},task={task},recipe=paper") == paper  # paper is the default
    p, r = _flat(paper), _flat(released)
    assert {k for k in p if p[k] != r[k]} <= RELEASED_KEYS
    micro, cut_m2c, cut_c2m, dtype = RELEASED[model]
    assert (paper.prompt.train_on_inputs, released.prompt.train_on_inputs) == (False, True)
    assert (paper.train.loss_normalization, released.train.loss_normalization) == ("token_mean", "micro_mean")
    assert (paper.prompt.truncation, released.prompt.truncation) == ("drop_examples", "right")
    assert released.train.batch_size // released.train.grad_accum == micro and released.train.batch_size == 32
    assert released.prompt.cutoff_len == (cut_m2c if task == "mol2cap" else cut_c2m)
    assert paper.prompt.cutoff_len == 2048 and released.model.compute_dtype == dtype
    assert (released.model.finetune, released.train.lr, released.selection.n_examples) == \
        (paper.model.finetune, paper.train.lr, paper.selection.n_examples)


def test_galactica_125m_released_mol2cap_is_full_fine_tuning_at_cutoff_1024():
    c = _load("model=galactica-125m,task=mol2cap,recipe=released")
    assert (c.model.finetune, c.prompt.cutoff_len, c.train.grad_accum) == ("full", 1024, 8)


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match="unknown recipe 'original'"):
        _load("model=mistral-7b,recipe=original")


def test_presets_doc_names_every_differing_key():
    text = PRESETS_DOC.read_text()
    for key in RELEASED_KEYS:
        assert f"`{key}`" in text, f"docs/PRESETS.md does not mention {key}"
