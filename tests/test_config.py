"""Typed config: defaults in one place, unknown keys and bad values are errors, every config file loads."""

import json
import pathlib
import sys

import pytest

from icma_jax import config as cfg_lib

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def test_defaults_round_trip_and_are_json():
    c = cfg_lib.from_config_dict(cfg_lib.default_config_dict())
    assert c == cfg_lib.Config()
    assert json.loads(json.dumps(cfg_lib.to_dict(c)))["train"]["buckets"] == [256, 512, 1024, 2048]


def test_unknown_keys_name_their_path():
    d = cfg_lib.default_config_dict().to_dict()
    d["train"]["learning_rate"] = 1e-4
    with pytest.raises(ValueError, match=r"train\.learning_rate"):
        cfg_lib.from_config_dict(d)
    with pytest.raises(ValueError, match="unknown config key.*optimizer"):
        cfg_lib.from_config_dict({"optimizer": {}})


@pytest.mark.parametrize("group,key,value,match", [
    ("train", "lr", "big", "train.lr"),
    ("train", "batch_size", 30, "not divisible by train.grad_accum"),
    ("train", "buckets", (512, 256), "strictly increasing"),
    ("data", "task", "smiles2iupac", "data.task"),
    ("prompt", "truncation", "left", "prompt.truncation"),
    ("selection", "p_skip", 1.5, "selection.p_skip"),
    ("mesh", "fsdp", -1, "at most one axis"),
    ("model", "finetune", "adapter", "model.finetune"),
    ("eval", "top_p", 0.0, "eval.top_p"),
])
def test_bad_values_are_clear_errors(group, key, value, match):
    d = cfg_lib.default_config_dict().to_dict()
    d[group][key] = value
    if group == "train" and key == "batch_size":
        d["train"]["grad_accum"] = 4
    with pytest.raises(ValueError, match=match):
        cfg_lib.from_config_dict(d)


def test_cross_field_checks_and_lossless_coercion():
    d = cfg_lib.default_config_dict().to_dict()
    d["prompt"]["cutoff_len"] = 4096
    with pytest.raises(ValueError, match="last bucket"):
        cfg_lib.from_config_dict(d)
    d = cfg_lib.default_config_dict().to_dict()
    d["train"]["lr"], d["train"]["buckets"] = 1, [64, 2048]
    c = cfg_lib.from_config_dict(d)
    assert c.train.lr == 1.0 and isinstance(c.train.lr, float) and c.train.buckets == (64, 2048)
    assert cfg_lib.EvalConfig().penalty_for("cap2mol") == 0.8 and cfg_lib.EvalConfig().penalty_for("mol2cap") == 1.0


@pytest.mark.parametrize("spec", [
    "tiny.py", "demo.py",
    "icma.py:model=galactica-125m,task=mol2cap,dataset=chebi20",
    "icma.py:model=galactica-125m,task=cap2mol,dataset=pubchem324k-iupac",
    "icma.py:model=galactica-1.3b,task=mol2cap,dataset=pubchem324k-molcap",
    "icma.py:model=mistral-7b,task=cap2mol,dataset=chebi20",
])
def test_every_config_file_converts(spec):
    c = cfg_lib.from_config_dict(cfg_lib.load_config_file(str(CONFIGS / spec)))
    assert c.train.buckets[-1] >= c.prompt.cutoff_len


def test_paper_presets_match_the_spec():
    def load(arg):
        return cfg_lib.from_config_dict(cfg_lib.load_config_file(f"{CONFIGS / 'icma.py'}:{arg}"))
    g = load("model=galactica-125m,task=cap2mol")
    assert (g.model.finetune, g.train.lr, g.selection.n_examples, g.prompt.cutoff_len) == ("full", 2e-4, 4, 2048)
    assert load("model=galactica-125m,task=mol2cap").selection.n_examples == 2
    m = load("model=mistral-7b,task=mol2cap")
    assert (m.model.finetune, m.model.lora_rank, m.model.lora_alpha, m.train.lr) == ("lora", 32, 64.0, 3e-4)
    assert (m.train.b1, m.train.b2, m.train.eps, m.train.weight_decay, m.train.clip_norm) == (0.9, 0.999, 1e-8, 0, 1)
    assert (m.train.batch_size, m.train.warmup_steps, m.train.epochs, m.train.seed) == (32, 1000, 10, 42)
    with pytest.raises(ValueError, match="unknown config argument 'modle'"):
        load("modle=x")
    with pytest.raises(ValueError, match="unknown preset model"):
        load("model=gpt2")


def test_misspelt_keys_suggest_the_declared_one():
    d = cfg_lib.default_config_dict().to_dict()
    d["train"]["lr_typo"] = 1e-4
    with pytest.raises(ValueError, match=r"unknown config key train\.lr_typo \(did you mean train\.lr\?\)"):
        cfg_lib.from_config_dict(d)
    with pytest.raises(ValueError, match=r"unknown config key trian \(did you mean train\?\)"):
        cfg_lib.from_config_dict({"trian": {}})
    assert "train.log_every" not in cfg_lib.declared_keys()  # removed: nothing read it


@pytest.mark.parametrize("old,new", [("graph", "gnn"), ("rdkit_path", "pathfp")])
def test_old_retrieval_spellings_name_the_new_one(old, new):
    d = cfg_lib.default_config_dict().to_dict()
    d["retrieval"]["method"] = old
    with pytest.raises(ValueError, match=f"retrieval.method='{old}' is now spelled '{new}'"):
        cfg_lib.from_config_dict(d)
    d["retrieval"]["method"] = new
    assert cfg_lib.from_config_dict(d).retrieval.method == new


@pytest.mark.parametrize("group,key,sentinel,meaning", [
    ("data", "train_limit", 0, "all rows"), ("data", "data_dir", "", "ICMA_DATA_DIR"),
    ("train", "max_steps", 0, "epochs"), ("train", "pack_length", 0, "no packing"),
    ("train", "eval_every", 0, "no periodic evaluation"), ("model", "path", "", "default source"),
    ("retrieval", "encoder_path", "", "no GIN"), ("eval", "repetition_penalty", 0.0, "paper"),
])
def test_unset_is_none_and_old_sentinels_are_refused(group, key, sentinel, meaning):
    d = cfg_lib.default_config_dict().to_dict()
    assert d[group][key] is None and getattr(cfg_lib.Config(), group).__dict__[key] is None
    d[group][key] = sentinel
    with pytest.raises(ValueError, match=f"{group}.{key}.*{meaning}"):
        cfg_lib.from_config_dict(d)


def test_config_files_load_without_sys_path_edits():
    before = list(sys.path)
    c = cfg_lib.load_config_file(f"{CONFIGS / 'tiny.py'}:steps=3")
    assert sys.path == before and c.train.max_steps == 3
    assert not (CONFIGS / "common.py").exists()
    with pytest.raises(ValueError, match="unknown config argument 'step'; did you mean 'steps'"):
        cfg_lib.load_config_file(f"{CONFIGS / 'tiny.py'}:step=3")
