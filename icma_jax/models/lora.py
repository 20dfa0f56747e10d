"""LoRA: config with ICMA's per-family targets, init (B = 0), merge/unmerge, trainable split.

LoRA weights live in the `"lora"` variable collection with the same module paths as their base kernels:
`lora[...]["q_proj"] = {"a": I x R, "b": R x O}` (stacked over layers like the base: N x I x R, N x R x O).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Every linear layer except lm_head (ICMA spec section 5).
DEFAULT_TARGETS = {
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """Rank r, alpha (scale = alpha / r), dropout on the adapter input, target module names."""

    rank: int = 32
    alpha: float = 64.0
    dropout: float = 0.1
    targets: tuple[str, ...] = DEFAULT_TARGETS["llama"]

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"LoraConfig.rank={self.rank} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraConfig.dropout={self.dropout} must be in [0, 1)")
        if not self.targets:
            raise ValueError("LoraConfig.targets is empty")
        object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @classmethod
    def for_family(cls, family: str, **kw) -> LoraConfig:
        """ICMA's defaults (r=32, alpha=64, dropout=0.1, all linears but lm_head) for `family`."""
        if family not in DEFAULT_TARGETS:
            raise ValueError(f"no LoRA defaults for family {family!r} (known: {sorted(DEFAULT_TARGETS)})")
        return cls(**{"targets": DEFAULT_TARGETS[family], **kw})


def init_lora(module_or_config: Any, lora_config: LoraConfig, key: jax.Array, params: Any = None) -> dict:
    """Fresh adapters (A ~ U(+-1/sqrt(in)), B = 0) for every targeted linear layer, in fp32.

    `params` is accepted for symmetry with the contract; the adapters' shapes come from the config, and base
    initialisation is dead code that XLA removes (nothing of the base model is materialised)."""
    from icma_jax.models.transformer import CausalLM, build_model

    module = module_or_config if isinstance(module_or_config, CausalLM) else build_model(module_or_config)
    module = module.clone(lora=lora_config)
    known = set(DEFAULT_TARGETS[module.config.family])
    unknown = [t for t in lora_config.targets if t not in known]
    if unknown:
        raise ValueError(f"LoRA targets {unknown} are not linear layers of a {module.config.family} model {sorted(known)}")
    tok = jnp.zeros((1, 1), jnp.int32)
    lora = jax.jit(lambda k: module.init({"params": k}, tok, tok)["lora"])(key)
    return nn.meta.unbox(lora)


def _delta(a: jax.Array, b: jax.Array, scale: float) -> jax.Array:
    return (jnp.matmul(a.astype(jnp.float32), b.astype(jnp.float32)) * scale)


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


def _peft_name(family: str, path: tuple[str, ...], layer: int | None) -> str:
    """PEFT module prefix for an adapted kernel, e.g. `base_model.model.model.layers.0.self_attn.q_proj`."""
    from icma_jax.models.hf_weights import hf_key

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
    import json
    import pathlib

    import numpy as np
    from safetensors.numpy import save_file

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
    import json
    import pathlib

    import numpy as np
    from safetensors.numpy import load_file

    from icma_jax.models.transformer import CausalLM, build_model

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
                raise ValueError(f"{weights_path}: adapter for {'/'.join(path)} has shape {arr.shape}, expected {shape}")
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
