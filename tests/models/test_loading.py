"""Config errors, checkpoint formats (safetensors, sharded index, pytorch_model.bin), sharded placement, remat."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icma_jax.models.config import UnsupportedConfigError, config_from_hf, read_config
from icma_jax.models.loading import load_model
from icma_jax.models.registry import resolve_model
from icma_jax.sharding import make_mesh, param_shardings

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("field,value,family", [
    ("word_embed_proj_dim", 16, "opt"), ("hidden_act", "gelu", "llama"), ("model_type", "gpt2", "llama"),
    ("rope_scaling", {"rope_type": "yarn", "factor": 2.0}, "llama"), ("sliding_window", 8, "llama"),
])
def test_unsupported_options_raise_naming_the_field(hf, field, value, family):
    d = hf.tiny_hf_config(family).to_dict()
    d[field] = value
    with pytest.raises(UnsupportedConfigError, match=field if field != "rope_scaling" else "rope_type"):
        config_from_hf(d, where="x/config.json")


def test_config_reads_transformers5_and_legacy_rope(tmp_path, hf):
    d = hf.tiny_hf_config("llama", rope_theta=500.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}).to_dict()
    new = config_from_hf(d)
    legacy = {k: v for k, v in d.items() if k != "rope_parameters"}
    legacy.update(rope_theta=500.0, rope_scaling=dict(d["rope_parameters"]))
    old = config_from_hf(legacy)
    assert new.rope_theta == old.rope_theta == 500.0
    assert new.rope_scaling == old.rope_scaling and new.rope_scaling.rope_type == "llama3"
    (tmp_path / "config.json").write_text("{\n  \"model_type\": \"llama\",\n  oops\n}")
    with pytest.raises(ValueError, match=r"config.json:3"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(ValueError, match="missing field"):
        read_config(tmp_path)


def _logits(lm, tokens, mask):
    with jax.default_matmul_precision("highest"):
        return np.asarray(lm.module.apply({"params": lm.params}, jnp.asarray(tokens), jnp.asarray(mask)))


def test_sharded_index_and_torch_bin_load_identically(tmp_path, hf):
    model, directory = hf.save_tiny(tmp_path, "llama")
    tokens, mask = hf.padded_batch()
    want = _logits(load_model(str(directory), tokenizer=False), tokens, mask)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    np.testing.assert_array_equal(_logits(load_model(str(tmp_path / "sharded"), tokenizer=False), tokens, mask), want)
    (tmp_path / "bin").mkdir()
    hf.torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_text((directory / "config.json").read_text())
    np.testing.assert_array_equal(_logits(load_model(str(tmp_path / "bin"), tokenizer=False), tokens, mask), want)


def test_missing_or_misshapen_tensor_is_named(tmp_path, hf):
    from safetensors.numpy import load_file, save_file

    _, directory = hf.save_tiny(tmp_path, "opt")
    tensors = load_file(str(directory / "model.safetensors"))
    key = next(k for k in tensors if k.endswith("layers.1.fc1.weight"))
    save_file({k: v for k, v in tensors.items() if k != key}, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match="layers.1.fc1.weight.*missing"):
        load_model(str(directory), tokenizer=False)
    save_file({**tensors, key: tensors[key][:-1]}, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match="layers.1.fc1.weight.*shape"):
        load_model(str(directory), tokenizer=False)


def test_loading_into_a_mesh_and_remat_match_single_device(tmp_path, hf):
    _, directory = hf.save_tiny(tmp_path, "mistral", num_attention_heads=4, num_key_value_heads=2)
    tokens, mask = hf.padded_batch(lengths=(7, 4, 9, 2))
    plain = load_model(str(directory), tokenizer=False)
    want = _logits(plain, tokens, mask)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    lm = load_model(str(directory), mesh=mesh, tokenizer=False, remat=True)
    q = lm.params["layers"]["self_attn"]["q_proj"]["kernel"]
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape == (2, 16, 16)
    np.testing.assert_allclose(_logits(lm, tokens, mask), want, atol=1e-5)

    def grads(model):
        with jax.default_matmul_precision("highest"):
            return jax.grad(lambda p: jnp.sum(jnp.sin(model.module.apply({"params": p}, jnp.asarray(tokens),
                                                                           jnp.asarray(mask)))))(model.params)

    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads(lm)), jax.tree.leaves(grads(plain))):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=0, atol=1e-5 * np.abs(r).max(),
                                   err_msg=f"remat + sharded vs plain gradient of {jax.tree_util.keystr(path)}")


def test_indivisible_axes_are_replicated(hf):
    from icma_jax.models.config import config_from_hf as cfh
    from icma_jax.models.transformer import abstract_variables, build_model

    c = cfh(hf.tiny_hf_config("llama", hidden_size=24, num_attention_heads=4, num_key_value_heads=1,
                              vocab_size=127).to_dict())
    sh = param_shardings(abstract_variables(build_model(c))["params"], make_mesh(data=1, fsdp=2, tensor=4))
    assert sh["layers"]["self_attn"]["k_proj"]["kernel"].spec == jax.sharding.PartitionSpec(None, "fsdp", None)
    assert sh["embed_tokens"]["embedding"].spec == jax.sharding.PartitionSpec(None, "fsdp")


def test_resolve_model_errors(tmp_path, monkeypatch):
    from huggingface_hub import constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an empty cache and no hub, whatever this machine has cached
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="known model"):
        resolve_model("no-such-model")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        resolve_model("someone/some-model")
    with pytest.raises(FileNotFoundError, match="facebook/galactica-125m"):
        resolve_model("galactica-125m")
    assert resolve_model("smollm2-135m").gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
