"""LoRA adapters: init (B = 0), merge/unmerge into the base kernels. `LoraConfig` is in `models/config.py`,
PEFT directories in `models/peft.py`, the adapted layer in `models/linear.py`.

LoRA weights live in the `"lora"` variable collection with the same module paths as their base kernels:
`lora[...]["q_proj"] = {"a": I x R, "b": R x O}` (stacked over layers like the base: Z x I x R, Z x R x O).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from icma_jax.models.config import LORA_TARGETS, LoraConfig
from icma_jax.models.transformer import CausalLM, build_model


def init_lora(module_or_config: Any, lora_config: LoraConfig, key: jax.Array, params: Any = None) -> dict:
    """Fresh adapters (A ~ U(+-1/sqrt(in)), B = 0) for every targeted linear layer, in fp32.

    `params` is accepted for symmetry with the contract; the adapters' shapes come from the config, and base
    initialisation is dead code that XLA removes (nothing of the base model is materialised)."""
    module = module_or_config if isinstance(module_or_config, CausalLM) else build_model(module_or_config)
    module = module.clone(lora=lora_config)
    known = set(LORA_TARGETS[module.config.family])
    unknown = [t for t in lora_config.targets if t not in known]
    if unknown:
        raise ValueError(f"LoRA targets {unknown} are not linear layers of a {module.config.family} model "
                         f"{sorted(known)}")
    tok = jnp.zeros((1, 1), jnp.int32)
    lora = jax.jit(lambda k: module.init({"params": k}, tok, tok)["lora"])(key)
    return nn.meta.unbox(lora)


def _delta(a_IxR: jax.Array, b_RxO: jax.Array, scale: float) -> jax.Array:
    return jnp.matmul(a_IxR.astype(jnp.float32), b_RxO.astype(jnp.float32)) * scale


def _map_kernels(params: Any, lora_params: Any, fn) -> Any:
    """Apply fn(kernel, a, b) to each base kernel that has an adapter, keeping everything else."""
    def walk(p, l):
        if isinstance(l, dict) and "a" in l and "b" in l and not isinstance(l["a"], dict):
            return {**p, "kernel": fn(p["kernel"], l["a"], l["b"]).astype(p["kernel"].dtype)}
        return {k: walk(v, l[k]) if k in l else v for k, v in p.items()} if isinstance(p, dict) else p
    return walk(dict(params), dict(lora_params))


def merge_lora(params: Any, lora_params: Any, lora_config: LoraConfig) -> Any:
    """W + (alpha/r) A B for every adapted kernel: the merged model needs no `"lora"` collection."""
    return _map_kernels(params, lora_params, lambda w, a, b: w.astype(jnp.float32) + _delta(a, b, lora_config.scale))


def unmerge_lora(params: Any, lora_params: Any, lora_config: LoraConfig) -> Any:
    """Inverse of `merge_lora` (exact up to rounding of the base dtype)."""
    return _map_kernels(params, lora_params, lambda w, a, b: w.astype(jnp.float32) - _delta(a, b, lora_config.scale))
