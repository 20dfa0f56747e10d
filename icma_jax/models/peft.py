"""PEFT interop: `export_peft` writes and `import_peft` reads a PEFT LoRA adapter directory
(`adapter_config.json`, `adapter_model.safetensors`, PEFT key names; A and B stored out x in, as torch does).

Dims (package legend): Z layers, I / O input / output features, R LoRA rank.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file

from icma_jax.models.config import LoraConfig
from icma_jax.models.hf_weights import hf_key
from icma_jax.models.lora import init_lora
from icma_jax.models.transformer import CausalLM, build_model


def _peft_name(family: str, path: tuple[str, ...], layer: int | None) -> str:
    """PEFT module prefix for an adapted kernel, e.g. `base_model.model.model.layers.0.self_attn.q_proj`."""
    key, _ = hf_key(family, path + ("kernel",), layer)
    return "base_model.model." + key.removesuffix(".weight")


def _adapted_modules(lora_params: Any) -> list[tuple[tuple[str, ...], dict]]:
    out = []

    def walk(prefix, node):
        if "a" in node and "b" in node and not isinstance(node["a"], dict):
            out.append((prefix, node))
        else:
            for k in sorted(node):
                walk(prefix + (k,), node[k])

    walk((), lora_params)
    return out


def export_peft(directory: Any, lora_params: Any, lora_config: LoraConfig, config: Any,
                base_model_name_or_path: str = "") -> Any:
    """Write a PEFT adapter directory (`adapter_config.json`, `adapter_model.safetensors`, PEFT key names)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for path, node in _adapted_modules(lora_params):
        a, b = np.asarray(jax.device_get(node["a"]), np.float32), np.asarray(jax.device_get(node["b"]), np.float32)
        for layer in range(a.shape[0]) if path[0] == "layers" else [None]:
            name = _peft_name(config.family, path, layer)
            tensors[f"{name}.lora_A.weight"] = np.ascontiguousarray((a[layer] if layer is not None else a).T)
            tensors[f"{name}.lora_B.weight"] = np.ascontiguousarray((b[layer] if layer is not None else b).T)
    save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora_config.rank, "lora_alpha": lora_config.alpha,
        "lora_dropout": lora_config.dropout, "target_modules": list(lora_config.targets), "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "modules_to_save": None, "use_rslora": False,
        "use_dora": False, "init_lora_weights": True, "base_model_name_or_path": base_model_name_or_path,
    }
    (directory / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    return directory


# PEFT options that change the maths; any value other than these defaults is refused, not ignored.
_PEFT_DEFAULTS = {"use_rslora": [False, None], "use_dora": [False, None], "fan_in_fan_out": [False, None],
                  "bias": ["none", None], "modules_to_save": [None, []], "layers_to_transform": [None, []],
                  "rank_pattern": [{}, None], "alpha_pattern": [{}, None], "lora_bias": [False, None],
                  "target_parameters": [None, []], "layer_replication": [None, []], "exclude_modules": [None, []]}


def import_peft(directory: Any, module_or_config: Any) -> tuple[LoraConfig, dict]:
    """Read a PEFT LoRA adapter directory into (LoraConfig, lora_params) for our model."""
    directory = pathlib.Path(directory)
    cfg_path = directory / "adapter_config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{directory}: no adapter_config.json")
    d = json.loads(cfg_path.read_text())
    if d.get("peft_type") != "LORA":
        raise ValueError(f"{cfg_path}: field 'peft_type'={d.get('peft_type')!r} is not 'LORA'")
    for key, allowed in _PEFT_DEFAULTS.items():
        if d.get(key) not in allowed:
            raise ValueError(f"{cfg_path}: field {key!r}={d.get(key)!r} is not supported")
    targets = d["target_modules"]
    if isinstance(targets, str):
        raise ValueError(f"{cfg_path}: field 'target_modules' is a regex ({targets!r}); give a list of names")
    module = module_or_config if isinstance(module_or_config, CausalLM) else build_model(module_or_config)
    lora_config = LoraConfig(int(d["r"]), float(d["lora_alpha"]), float(d.get("lora_dropout", 0.0)), tuple(targets))
    weights_path = directory / "adapter_model.safetensors"
    if not weights_path.exists():
        raise FileNotFoundError(f"{directory}: no adapter_model.safetensors")
    tensors = load_file(str(weights_path))
    abstract = jax.eval_shape(lambda: init_lora(module, lora_config, jax.random.key(0)))
    used = set()

    def fill(path, node):
        out = {}
        for ab, suffix in (("a", "lora_A"), ("b", "lora_B")):
            shape = node[ab].shape
            layers = range(shape[0]) if path[0] == "layers" else [None]
            arrs = []
            for layer in layers:
                key = f"{_peft_name(module.config.family, path, layer)}.{suffix}.weight"
                if key not in tensors:
                    raise ValueError(f"{weights_path}: tensor {key!r} is missing")
                used.add(key)
                arrs.append(np.asarray(tensors[key], np.float32).T)
            arr = np.stack(arrs) if path[0] == "layers" else arrs[0]
            if arr.shape != shape:
                raise ValueError(f"{weights_path}: adapter for {'/'.join(path)} has shape {arr.shape}, "
                                 f"expected {shape}")
            out[ab] = jnp.asarray(arr)
        return out

    def walk(prefix, node):
        if "a" in node and "b" in node and not isinstance(node["a"], dict):
            return fill(prefix, node)
        return {k: walk(prefix + (k,), v) for k, v in node.items()}

    lora_params = walk((), abstract)
    extra = sorted(set(tensors) - used)
    if extra:
        raise ValueError(f"{weights_path}: {len(extra)} tensors do not match this model, e.g. {extra[:3]}")
    return lora_config, lora_params
