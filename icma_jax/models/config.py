"""`LMConfig`: one frozen description of an OPT / Llama / Mistral causal LM, read from `config.json`;
`LoraConfig`: the adapters trained on it; `dtype_of`: dtype names to JAX dtypes."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax.numpy as jnp

FAMILIES = ("opt", "llama", "mistral")
DTYPES = ("float32", "bfloat16", "float16")
ROPE_TYPES = ("default", "linear", "llama3")
ATTENTION = ("chunked", "xla", "cudnn", "pallas")  # training attention, see models/attention.py
# Every linear layer except lm_head (ICMA spec section 5).
LORA_TARGETS = {
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


def dtype_of(name: str) -> Any:
    """"float32" | "bfloat16" | "float16" -> the JAX dtype."""
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]


class UnsupportedConfigError(ValueError):
    """A checkpoint option this code does not implement (raised instead of silently ignoring it)."""


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling: `linear` (factor) or `llama3` (factor, low/high freq factors, old context)."""

    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_positions: int = 8192


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Architecture + dtypes of a causal LM; `hf` keeps the original config.json for export."""

    family: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    max_positions: int
    norm_eps: float = 1e-5
    activation: str = "silu"
    tie_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling = RopeScaling()
    sliding_window: int | None = None
    pre_norm: bool = True  # OPT's do_layer_norm_before; Llama is always pre-norm
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    dtype: str = "float32"
    param_dtype: str = "float32"
    attention: str = "chunked"  # training attention without a cache: chunked | xla | cudnn | pallas
    hf: tuple[tuple[str, Any], ...] = ()  # original config.json items (hashable), for export

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise UnsupportedConfigError(f"model family {self.family!r} is not one of {FAMILIES}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ValueError(f"LMConfig.{name}={getattr(self, name)!r} is not one of {DTYPES}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"sliding_window={self.sliding_window} must be >= 1 or None")
        if self.attention not in ATTENTION:
            raise ValueError(f"LMConfig.attention={self.attention!r} is not one of {ATTENTION}")

    @property
    def hf_dict(self) -> dict[str, Any]:
        return dict(self.hf)

    def replace(self, **kw) -> LMConfig:
        return dataclasses.replace(self, **kw)


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """Rank r, alpha (scale = alpha / r), dropout on the adapter input, target module names."""

    rank: int = 32
    alpha: float = 64.0
    dropout: float = 0.1
    targets: tuple[str, ...] = LORA_TARGETS["llama"]

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
        if family not in LORA_TARGETS:
            raise ValueError(f"no LoRA defaults for family {family!r} (known: {sorted(LORA_TARGETS)})")
        return cls(**{"targets": LORA_TARGETS[family], **kw})


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple((k, _freeze(x)) for k, x in v.items())
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple) and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in v) and v:
        return {k: _thaw(x) for k, x in v}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def hf_config_dict(config: LMConfig) -> dict[str, Any]:
    """The original config.json contents (as plain dicts/lists)."""
    return {k: _thaw(v) for k, v in config.hf}


def _eos_ids(d: dict) -> tuple[int, ...]:
    eos = d.get("eos_token_id")
    if eos is None:
        return ()
    return tuple(int(e) for e in (eos if isinstance(eos, list) else [eos]))


def _rope(d: dict, where: str) -> tuple[float, RopeScaling]:
    """(theta, scaling) from transformers-5 `rope_parameters` or the older `rope_theta` + `rope_scaling`."""
    params = dict(d.get("rope_parameters") or {})
    theta = float(params.get("rope_theta", d.get("rope_theta", 10000.0)))
    scaling = d.get("rope_scaling") or params
    rope_type = scaling.get("rope_type", scaling.get("type", "default")) if scaling else "default"
    if rope_type not in ROPE_TYPES:
        raise UnsupportedConfigError(
            f"{where}: field 'rope_scaling.rope_type'={rope_type!r} is not supported {ROPE_TYPES}")
    if rope_type == "default":
        return theta, RopeScaling()
    if rope_type == "linear":
        return theta, RopeScaling("linear", factor=float(scaling["factor"]))
    return theta, RopeScaling(
        "llama3",
        factor=float(scaling["factor"]),
        low_freq_factor=float(scaling["low_freq_factor"]),
        high_freq_factor=float(scaling["high_freq_factor"]),
        original_max_positions=int(scaling["original_max_position_embeddings"]),
    )


def _require(cond: bool, where: str, field: str, value: Any, why: str) -> None:
    if not cond:
        raise UnsupportedConfigError(f"{where}: field {field!r}={value!r} is not supported ({why})")


def _opt(d: dict, where: str) -> dict[str, Any]:
    hidden = int(d["hidden_size"])
    _require(d.get("word_embed_proj_dim", hidden) == hidden, where, "word_embed_proj_dim",
             d.get("word_embed_proj_dim"), "projected embeddings (OPT-350m) are not implemented")
    _require(d.get("layer_norm_elementwise_affine", True), where, "layer_norm_elementwise_affine", False,
             "layer norms without affine weights are not implemented")
    _require(not d.get("_remove_final_layer_norm", False), where, "_remove_final_layer_norm", True,
             "legacy OPT checkpoints without final layer norm are not implemented")
    act = d.get("activation_function", "relu")
    _require(act in ("relu", "gelu"), where, "activation_function", act, "expected relu or gelu")
    heads = int(d["num_attention_heads"])
    bias = bool(d.get("enable_bias", True))
    return dict(
        family="opt", vocab_size=int(d["vocab_size"]), d_model=hidden, n_layers=int(d["num_hidden_layers"]),
        n_heads=heads, n_kv_heads=heads, head_dim=hidden // heads, d_ff=int(d["ffn_dim"]),
        max_positions=int(d["max_position_embeddings"]), norm_eps=1e-5, activation=act,
        tie_embeddings=bool(d.get("tie_word_embeddings", True)), attention_bias=bias, mlp_bias=bias,
        pre_norm=bool(d.get("do_layer_norm_before", True)),
    )


def _llama(d: dict, where: str, family: str) -> dict[str, Any]:
    act = d.get("hidden_act", "silu")
    _require(act == "silu", where, "hidden_act", act, "expected silu")
    hidden, heads = int(d["hidden_size"]), int(d["num_attention_heads"])
    theta, scaling = _rope(d, where)
    partial = (d.get("rope_parameters") or {}).get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0))
    _require(partial == 1.0, where, "partial_rotary_factor", partial, "partial rotary embeddings")
    window = d.get("sliding_window") if family == "mistral" else None
    if family == "llama":
        _require(d.get("sliding_window") is None, where, "sliding_window", d.get("sliding_window"),
                 "use model_type mistral")
    return dict(
        family=family, vocab_size=int(d["vocab_size"]), d_model=hidden, n_layers=int(d["num_hidden_layers"]),
        n_heads=heads, n_kv_heads=int(d.get("num_key_value_heads") or heads),
        head_dim=int(d.get("head_dim") or hidden // heads), d_ff=int(d["intermediate_size"]),
        max_positions=int(d.get("max_position_embeddings", 2048)), norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        activation="silu", tie_embeddings=bool(d.get("tie_word_embeddings", False)),
        attention_bias=bool(d.get("attention_bias", False)), mlp_bias=bool(d.get("mlp_bias", False)),
        rope_theta=theta, rope_scaling=scaling, sliding_window=None if window is None else int(window),
    )


def config_from_hf(d: dict[str, Any], *, where: str = "config.json", dtype: str = "float32",
                   param_dtype: str = "float32", attention: str = "chunked") -> LMConfig:
    """Map a transformers config dict onto `LMConfig`; options we do not implement raise."""
    model_type = d.get("model_type")
    if model_type not in FAMILIES:
        raise UnsupportedConfigError(f"{where}: field 'model_type'={model_type!r} is not one of {FAMILIES}")
    try:
        fields = _opt(d, where) if model_type == "opt" else _llama(d, where, model_type)
        return LMConfig(
            **fields, bos_token_id=d.get("bos_token_id"), eos_token_ids=_eos_ids(d),
            pad_token_id=d.get("pad_token_id"), dtype=dtype, param_dtype=param_dtype, attention=attention,
            hf=tuple((k, _freeze(v)) for k, v in d.items()),
        )
    except KeyError as e:
        raise ValueError(f"{where}: missing field {e.args[0]!r}") from None


def read_config(path: str | pathlib.Path, **kw) -> LMConfig:
    """Read `config.json` (or a directory holding it)."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no config.json")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    return config_from_hf(d, where=str(path), **kw)
