"""Tokenizers: from a transformers directory, or rebuilt torch-free from GGUF metadata; left padding."""

from __future__ import annotations

from typing import Any

from icma_jax.models.registry import ModelSource


def load_tokenizer(source: ModelSource) -> Any:
    """A fast tokenizer padding on the left (pad = eos when the model defines no pad token)."""
    from transformers import AutoTokenizer

    from icma_jax.models.gguf_tokenizer import load_gguf_tokenizer

    if source.kind == "gguf":
        tok = load_gguf_tokenizer(source.path)
    else:
        try:
            tok = AutoTokenizer.from_pretrained(str(source.directory))
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"{source.path}: cannot load a tokenizer ({e})") from None
    tok.padding_side = "left"
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"{source.path}: tokenizer has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    return tok
