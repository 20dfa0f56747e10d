"""Flax causal LMs (OPT/Galactica, Llama, Mistral) with HF/GGUF loading, LoRA and PEFT interop.

Modules: `config` (LMConfig, LoraConfig), `transformer` (CausalLM, KV cache), `llama` / `opt` (blocks),
`attention` (every attention path), `linear` (LoRA linear), `dropout` (hashed dropout), `norms`, `rope`,
`lora` (init, merge), `peft` (PEFT directories), `loading` / `registry` / `hf_weights` / `gguf_weights` /
`tokenizer` (checkpoints), `gnn` (the molecule encoder).

Tensor names end in their shape, in the package's dimension legend (the `icma_jax` docstring).
"""

# Configuration
from icma_jax.models.config import (LMConfig, LoraConfig, RopeScaling, UnsupportedConfigError, config_from_hf,
                                    read_config)
# Loading and export
from icma_jax.models.hf_weights import save_hf_checkpoint
from icma_jax.models.loading import LoadedModel, load_model
# LoRA
from icma_jax.models.lora import init_lora, merge_lora, unmerge_lora
from icma_jax.models.peft import export_peft, import_peft
from icma_jax.models.registry import ModelSource, resolve_model
# The module
from icma_jax.models.transformer import CausalLM, KVCache, abstract_variables, build_model, init_cache

__all__ = [
    "LMConfig", "RopeScaling", "UnsupportedConfigError", "config_from_hf", "read_config",
    "LoadedModel", "load_model", "save_hf_checkpoint", "ModelSource", "resolve_model",
    "LoraConfig", "init_lora", "merge_lora", "unmerge_lora", "export_peft", "import_peft",
    "CausalLM", "KVCache", "build_model", "init_cache", "abstract_variables",
]
