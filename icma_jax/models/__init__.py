"""Flax causal LMs (OPT/Galactica, Llama, Mistral) with HF/GGUF loading, LoRA and PEFT interop.

Modules: `config` (LMConfig, LoraConfig), `transformer` (CausalLM, KV cache), `llama` / `opt` (blocks),
`attention` (every attention path), `linear` (LoRA linear), `dropout` (hashed dropout), `norms`, `rope`,
`lora` (init, merge), `peft` (PEFT directories), `loading` / `registry` / `hf_weights` / `gguf_weights` /
`tokenizer` (checkpoints), `gnn` (the molecule encoder).

Dimension legend (one for the whole package; a tensor's name ends in its shape, e.g. `h_BxLxD`):
B batch rows · L tokens of a row (the token axis everywhere; in a cached call, the tokens fed in) ·
S key positions / KV-cache slots · W head (target) positions of a row · P prompt bucket · U generated tokens ·
V vocabulary · D model width · F feed-forward width · I, O input / output features of a linear ·
R LoRA rank · T = B L tokens of a batch flattened · Z layers · A query heads · K kv heads ·
J = A/K query heads per kv head · M = L J grouped query rows · H head dim · Y micro-batches ·
X beams · C beam candidates (2X) · N graph nodes · E graph edges · G graphs. Digits are literal sizes
(`seed_2`, `logits_Bx1xV`).
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
