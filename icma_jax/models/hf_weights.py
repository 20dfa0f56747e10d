"""Hugging Face checkpoints <-> our parameter tree: readers, the naming table, sharded placement, export.

Our module names mirror transformers' (`self_attn.q_proj`, `mlp.gate_proj`, `fc1`, ...), so the table is a
rule: HF `{prefix}layers.{i}.{module}.weight` (out x in) <-> ours `layers/{module}/kernel[i]` (in x out);
1-D weights are norm `scale`s, `embed_*.weight` are `embedding`s, `.bias` stays `bias`.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Protocol

import jax
import ml_dtypes
import numpy as np
from jax.sharding import Sharding, SingleDeviceSharding

from icma_jax.models.config import LMConfig

_LEAF_TO_HF = {"kernel": "weight", "scale": "weight", "bias": "bias", "embedding": "weight"}
_NP_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


class WeightSource(Protocol):
    """Lazy access to named HF-layout tensors."""

    where: str

    def keys(self) -> set[str]: ...

    def get(self, key: str) -> np.ndarray: ...


def hf_key(family: str, path: tuple[str, ...], layer: int | None) -> tuple[str, bool]:
    """(HF tensor name, transpose?) for one of our leaves; `layer` picks the slice of a stacked leaf."""
    *mods, leaf = path
    if mods == ["lm_head"]:
        return "lm_head.weight", True
    prefix = "model.decoder." if family == "opt" else "model."
    name = f"layers.{layer}." + ".".join(mods[1:]) if mods[0] == "layers" else ".".join(mods)
    return f"{prefix}{name}.{_LEAF_TO_HF[leaf]}", leaf == "kernel"


class SafetensorsSource:
    """`model.safetensors` or a sharded `model.safetensors.index.json`, read lazily with safetensors.numpy."""

    def __init__(self, path: pathlib.Path):
        from safetensors import safe_open

        self.where = str(path)
        if path.name.endswith(".index.json"):
            try:
                weight_map = json.loads(path.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{path}: not a safetensors index (field 'weight_map': {e})") from None
            files = sorted(set(weight_map.values()))
            handles = {f: safe_open(str(path.parent / f), framework="numpy") for f in files}
            self._where_is = {k: handles[f] for k, f in weight_map.items()}
        else:
            handle = safe_open(str(path), framework="numpy")
            self._where_is = {k: handle for k in handle.keys()}

    def keys(self) -> set[str]:
        return set(self._where_is)

    def get(self, key: str) -> np.ndarray:
        return self._where_is[key].get_tensor(key)


class TorchBinSource:
    """`pytorch_model.bin` via `torch.load(weights_only=True, mmap=True)` (only when torch is installed)."""

    def __init__(self, path: pathlib.Path):
        try:
            import torch
        except ImportError:
            raise RuntimeError(f"{path}: reading pytorch_model.bin needs torch: pip install 'icma-jax[torch]' "
                               "(or convert the checkpoint to safetensors)") from None
        self.where = str(path)
        self._sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)

    def keys(self) -> set[str]:
        return set(self._sd)

    def get(self, key: str) -> np.ndarray:
        t = self._sd[key]
        return t.float().numpy() if str(t.dtype) == "torch.bfloat16" else t.numpy()


def open_checkpoint(directory: pathlib.Path) -> WeightSource:
    """The weight files of an HF model directory, preferring safetensors."""
    for name, cls in (("model.safetensors", SafetensorsSource), ("model.safetensors.index.json", SafetensorsSource),
                      ("pytorch_model.bin", TorchBinSource)):
        if (directory / name).exists():
            return cls(directory / name)
    raise FileNotFoundError(f"{directory}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def _resolve(source: WeightSource, key: str) -> str:
    """Accept checkpoints saved from the base model (`decoder.*`, `layers.*`) as well as the LM head class."""
    keys = source.keys()
    for cand in (key, key.removeprefix("model.")):
        if cand in keys:
            return cand
    raise ValueError(f"{source.where}: tensor {key!r} is missing")


def load_params(source: WeightSource, config: LMConfig, abstract_params: Any,
                shardings: Any = None) -> Any:
    """Build our params tree from `source`, each leaf created directly in its sharding.

    Each device's shard is produced by a callback reading only the layers it needs, so the host never holds
    more than one tensor beyond the source's own (memory-mapped) storage."""
    np_dtype = _NP_DTYPES[config.param_dtype]
    default = SingleDeviceSharding(jax.devices()[0])
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract_params)
    shard_leaves = [default] * len(flat) if shardings is None else jax.tree_util.tree_leaves(
        shardings, is_leaf=lambda x: isinstance(x, Sharding))
    leaves = []
    for (kp, aval), sharding in zip(flat, shard_leaves):
        path = tuple(k.key for k in kp)
        stacked = path[0] == "layers"

        def read(layer: int | None, path=path, aval=aval) -> np.ndarray:
            key, transpose = hf_key(config.family, path, layer)
            arr = source.get(_resolve(source, key))
            arr = arr.T if transpose else arr
            want = aval.shape[1:] if stacked else aval.shape
            if arr.shape != tuple(want):
                raise ValueError(f"{source.where}: tensor {key!r} has shape {arr.shape}, expected {tuple(want)}"
                                 f"{' (transposed)' if transpose else ''} for config {config.family}")
            return arr

        def callback(index, read=read, stacked=stacked, n=aval.shape[0]) -> np.ndarray:
            if not stacked:
                return np.asarray(read(None)[index], dtype=np_dtype)
            layers = range(n)[index[0]]
            return np.stack([np.asarray(read(i)[index[1:]], dtype=np_dtype) for i in layers])

        leaves.append(jax.make_array_from_callback(aval.shape, sharding, callback))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def hf_state_dict(params: Any, config: LMConfig, dtype: str = "float32") -> dict[str, np.ndarray]:
    """Our params as an HF state dict (numpy, HF names/layouts), one layer slice per tensor."""
    out: dict[str, np.ndarray] = {}
    for kp, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        path = tuple(k.key for k in kp)
        arr = np.asarray(jax.device_get(leaf)).astype(_NP_DTYPES[dtype])
        for layer in range(arr.shape[0]) if path[0] == "layers" else [None]:
            key, transpose = hf_key(config.family, path, layer)
            a = arr[layer] if layer is not None else arr
            out[key] = np.ascontiguousarray(a.T if transpose else a)
    if config.tie_embeddings:
        out.pop("lm_head.weight", None)
    return out


def hf_config_for(config: LMConfig, dtype: str = "float32") -> dict[str, Any]:
    """A transformers config.json for `config` (the original one updated, or built from scratch)."""
    from icma_jax.models.config import hf_config_dict

    c = config
    d = hf_config_dict(c)
    d.pop("quantization_config", None)
    common = dict(vocab_size=c.vocab_size, hidden_size=c.d_model, num_hidden_layers=c.n_layers,
                  num_attention_heads=c.n_heads, max_position_embeddings=c.max_positions,
                  tie_word_embeddings=c.tie_embeddings, bos_token_id=c.bos_token_id, pad_token_id=c.pad_token_id,
                  eos_token_id=(list(c.eos_token_ids) if len(c.eos_token_ids) > 1 else
                                (c.eos_token_ids[0] if c.eos_token_ids else None)), dtype=dtype)
    if c.family == "opt":
        fam = dict(model_type="opt", architectures=["OPTForCausalLM"], ffn_dim=c.d_ff, enable_bias=c.attention_bias,
                   activation_function=c.activation, do_layer_norm_before=c.pre_norm, word_embed_proj_dim=c.d_model)
    else:
        rope: dict[str, Any] = {"rope_theta": c.rope_theta, "rope_type": c.rope_scaling.rope_type}
        if c.rope_scaling.rope_type != "default":
            rope["factor"] = c.rope_scaling.factor
        if c.rope_scaling.rope_type == "llama3":
            rope.update(low_freq_factor=c.rope_scaling.low_freq_factor,
                        high_freq_factor=c.rope_scaling.high_freq_factor,
                        original_max_position_embeddings=c.rope_scaling.original_max_positions)
        arch = "MistralForCausalLM" if c.family == "mistral" else "LlamaForCausalLM"
        fam = dict(model_type=c.family, architectures=[arch], intermediate_size=c.d_ff,
                   num_key_value_heads=c.n_kv_heads, head_dim=c.head_dim, rms_norm_eps=c.norm_eps, hidden_act="silu",
                   attention_bias=c.attention_bias, rope_parameters=rope)
        d.pop("rope_theta", None)
        d.pop("rope_scaling", None)
        if c.family == "llama":
            fam["mlp_bias"] = c.mlp_bias
        else:
            fam["sliding_window"] = c.sliding_window
    return {**d, **common, **fam}


def save_hf_checkpoint(directory: str | pathlib.Path, params: Any, config: LMConfig, tokenizer: Any = None,
                       dtype: str = "float32") -> pathlib.Path:
    """Write `config.json` + `model.safetensors` (+ tokenizer files) loadable by transformers and by us."""
    from safetensors.numpy import save_file

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(hf_config_for(config, dtype), indent=2))
    save_file(hf_state_dict(params, config, dtype), str(directory / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return directory
