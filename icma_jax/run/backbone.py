"""The backbone of a run: model module, tokenizer, frozen base tree and trainable tree, born sharded.

`tiny` is a random 2-layer Llama over the character tokenizer (tests, no files); every other source goes
through `icma_jax.models.loading.load_model` (the run's `model.path` or `model.name`: a known name such as
`smollm2-135m`, a local HF directory or GGUF file, or a hub id when online).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import Mesh

from icma_jax.data.char_tokenizer import char_tokenizer
from icma_jax.models import LoraConfig
from icma_jax.models.config import LMConfig, config_from_hf, read_config
from icma_jax.models.gguf_weights import GGUFSource
from icma_jax.models.loading import load_model
from icma_jax.models.lora import init_lora
from icma_jax.models.registry import resolve_model
from icma_jax.models.tokenizer import load_tokenizer
from icma_jax.models.transformer import CausalLM, abstract_variables, build_model
from icma_jax.sharding import param_shardings

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Backbone:
    """What training needs of the model; `base` is `{}` for full fine-tuning (everything is trainable)."""

    module: CausalLM
    lm_config: LMConfig
    tokenizer: Any
    base: PyTree
    base_sharding: PyTree
    trainable: PyTree
    trainable_sharding: PyTree
    n_params: int  # base model parameters (adapters excluded)


def tiny_lm_config(vocab_size: int, dtype: str = "float32", param_dtype: str = "float32") -> LMConfig:
    """A 2-layer Llama, d_model 32, 4 heads (2 KV heads), 1,024 positions."""
    return LMConfig(family="llama", vocab_size=vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                    head_dim=8, d_ff=64, max_positions=1024, bos_token_id=1, eos_token_ids=(2,), pad_token_id=0,
                    dtype=dtype, param_dtype=param_dtype)


def _random_params(module: CausalLM, mesh: Mesh, key: jax.Array) -> tuple[PyTree, PyTree]:
    abstract = abstract_variables(module)["params"]
    sharding = param_shardings(abstract, mesh)
    tok = jax.numpy.zeros((1, 1), jax.numpy.int32)
    init = jax.jit(lambda k: nn.meta.unbox(module.init({"params": k}, tok, tok)["params"]), out_shardings=sharding)
    return init(key), sharding


def _count(tree: PyTree) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)))


def describe(source: str, dtype: str, param_dtype: str) -> tuple[LMConfig, Any]:
    """The architecture (activations in `dtype`, weights in `param_dtype`) and tokenizer of the model at
    `source`, read without loading weights or compiling anything."""
    if source == "tiny":
        tokenizer = char_tokenizer()
        return tiny_lm_config(len(tokenizer), dtype, param_dtype), tokenizer
    found = resolve_model(source)
    if found.kind == "gguf":
        lm_config = config_from_hf(GGUFSource(found.path).hf_config(), where=str(found.path), dtype=dtype,
                                   param_dtype=param_dtype)
    else:
        lm_config = read_config(found.directory, dtype=dtype, param_dtype=param_dtype)
    return lm_config, load_tokenizer(found)


def load_backbone(source: str, lm_config: LMConfig, tokenizer: Any, mesh: Mesh, key: jax.Array, *,
                  lora: LoraConfig | None, remat: bool = False) -> Backbone:
    """Module and parameter trees of the model at `source`, sharded over `mesh`; with `lora`, fresh adapters
    from `key` are the trainable tree, else every weight is."""
    init_key, lora_key = jax.random.split(key)
    if source == "tiny":
        params, sharding = _random_params(build_model(lm_config), mesh, init_key)
    else:
        loaded = load_model(source, dtype=lm_config.dtype, param_dtype=lm_config.param_dtype, mesh=mesh,
                            tokenizer=False)
        params = loaded.params
        sharding = param_shardings(abstract_variables(build_model(lm_config))["params"], mesh)
    n_params = _count(params)
    if lora is None:
        module = build_model(lm_config, remat=remat)
        return Backbone(module, lm_config, tokenizer, {}, {}, params, sharding, n_params)
    module = build_model(lm_config, lora, remat=remat)
    abstract_lora = jax.eval_shape(lambda k: init_lora(module, lora, k), lora_key)
    lora_sharding = jax.tree.map(lambda _: jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
                                 abstract_lora)
    adapters = jax.device_put(init_lora(module, lora, lora_key), lora_sharding)
    return Backbone(module, lm_config, tokenizer, params, sharding, adapters, lora_sharding, n_params)
