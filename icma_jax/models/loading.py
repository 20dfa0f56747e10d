"""`load_model`: name / directory / GGUF / hub id -> config, Flax module, (sharded) params, tokenizer."""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
from jax.sharding import Mesh

from icma_jax.models.config import LMConfig, config_from_hf, read_config
from icma_jax.models.gguf_weights import GGUFSource
from icma_jax.models.hf_weights import load_params, open_checkpoint
from icma_jax.models.registry import ModelSource, resolve_model
from icma_jax.models.tokenizer import load_tokenizer
from icma_jax.models.transformer import abstract_variables, build_model


class LoadedModel(NamedTuple):
    """A ready model: `module.apply({"params": params}, tokens_BxL, segment_ids_BxL) -> logits_BxLxV`."""

    config: LMConfig
    module: nn.Module
    params: Any
    tokenizer: Any
    source: ModelSource | None = None


def load_model(name_or_dir: str, *, dtype: str = "float32", param_dtype: str = "float32", mesh: Mesh | None = None,
               remat: bool = False, tokenizer: bool = True) -> LoadedModel:
    """Load weights straight into their target sharding (`mesh`) or onto the first device."""
    from icma_jax.sharding import param_shardings

    source = resolve_model(name_or_dir)
    if source.kind == "gguf":
        weights = GGUFSource(source.path)
        config = config_from_hf(weights.hf_config(), where=str(source.path), dtype=dtype, param_dtype=param_dtype)
    else:
        config = read_config(source.directory, dtype=dtype, param_dtype=param_dtype)
        weights = open_checkpoint(source.directory)
    module = build_model(config, remat=remat)
    abstract = abstract_variables(module)["params"]
    shardings = None if mesh is None else param_shardings(abstract, mesh)
    params = load_params(weights, config, nn.meta.unbox(abstract), shardings)
    if isinstance(weights, GGUFSource):
        weights.get.cache_clear()
    return LoadedModel(config, module, params, load_tokenizer(source) if tokenizer else None, source)
