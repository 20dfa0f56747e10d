"""Shared config pieces: `parse_arg` for `--config configs/x.py:key=value,...` and the base ConfigDict."""

from __future__ import annotations

import ml_collections

from icma_jax.config import default_config_dict


def _convert(key: str, text: str, default):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"config argument {key}={text!r} must be a boolean")
        return text.lower() in ("true", "1")
    try:
        return type(default)(text)
    except ValueError as e:
        raise ValueError(f"config argument {key}={text!r} must be of type {type(default).__name__}") from e


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses `"a=1,b=x"` against typed `defaults`; unknown keys and bad values are errors."""
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"config argument {item!r} must look like key=value")
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; known: {', '.join(defaults)}")
        out[key] = _convert(key, value, defaults[key])
    return ml_collections.ConfigDict(out)


def base() -> ml_collections.ConfigDict:
    """Every declared key at its default (icma_jax.config); presets edit this."""
    return default_config_dict()
