"""Flax causal LMs (OPT/Galactica, Llama, Mistral) with HF/GGUF loading, LoRA and PEFT interop."""

# Configuration
from icma_jax.models.config import LMConfig, RopeScaling, UnsupportedConfigError, config_from_hf, read_config
# Loading and export
from icma_jax.models.hf_weights import save_hf_checkpoint
from icma_jax.models.loading import LoadedModel, load_model
# LoRA
from icma_jax.models.lora import (LoraConfig, export_peft, import_peft, init_lora, merge_lora,
                                  unmerge_lora)
from icma_jax.models.registry import ModelSource, resolve_model
# The module
from icma_jax.models.transformer import CausalLM, KVCache, abstract_variables, build_model, init_cache

__all__ = [
    "LMConfig", "RopeScaling", "UnsupportedConfigError", "config_from_hf", "read_config",
    "LoadedModel", "load_model", "save_hf_checkpoint", "ModelSource", "resolve_model",
    "LoraConfig", "init_lora", "merge_lora", "unmerge_lora", "export_peft", "import_peft",
    "CausalLM", "KVCache", "build_model", "init_cache", "abstract_variables",
]
