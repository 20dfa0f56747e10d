"""GGUF tokenizers without torch: `gguf` reads the metadata, transformers' own GGUF builders make the vocabulary.

transformers' `AutoTokenizer(..., gguf_file=)` reads the same metadata through a module that imports torch;
only that reader is replaced here. The builders (byte-level BPE, sentencepiece, unigram, Gemma's and Phi-3's
variants) are transformers' own, so the ids are the ones transformers gives (tested on every ChEBI-20 test
caption and SMILES).
"""

from __future__ import annotations

import pathlib
from typing import Any

# The metadata keys the tokenizer needs; every other key (and every tensor) is left unread.
_SPECIAL_IDS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
                "pad_token": "padding_token_id"}


class UnsupportedTokenizerError(ValueError):
    """The GGUF file states a tokenizer type no builder handles."""


def read_tokenizer_metadata(path: str | pathlib.Path) -> dict[str, Any]:
    """`{key: value}` for `general.architecture` and every `tokenizer.*` key, values as Python objects."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {key: field.contents() for key, field in reader.fields.items()
            if key == "general.architecture" or key.startswith("tokenizer.")}


def tokenizer_parts(metadata: dict[str, Any]) -> tuple[str, dict, dict]:
    """`(architecture, tokenizer_dict, tokenizer_config)`, as transformers' `get_gguf_tokenizer` returns them."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING

    grouped = {group: {name: metadata[f"tokenizer.{key}"] for key, name in renames.items()
                       if f"tokenizer.{key}" in metadata}
               for group, renames in GGUF_TOKENIZER_MAPPING.items()}
    tokenizer, config = grouped["tokenizer"], grouped["tokenizer_config"]
    if tokenizer.get("tokenizer_type") == "llama":
        config.setdefault("add_bos_token", True)  # llama.cpp adds BOS to a sentencepiece vocabulary by default
    elif tokenizer.get("tokenizer_type") == "gemma4":
        config["add_bos_token"] = False  # Gemma 4's chat template writes <bos> itself
    for name, key in _SPECIAL_IDS.items():
        token_id = metadata.get(f"tokenizer.ggml.{key}")
        config[name] = tokenizer["tokens"][token_id] if token_id is not None else None
    return metadata["general.architecture"], tokenizer, config


def load_gguf_tokenizer(path: str | pathlib.Path) -> Any:
    """A `PreTrainedTokenizerFast` rebuilt from a GGUF file's metadata (no torch needed)."""
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_TYPES, convert_gguf_tokenizer

    architecture, tokenizer_dict, config = tokenizer_parts(read_tokenizer_metadata(path))
    kind = tokenizer_dict.get("tokenizer_type")
    try:
        backend, extra = convert_gguf_tokenizer(architecture, tokenizer_dict)
    except ValueError as e:
        if "Cannot build a tokenizer" not in str(e):
            raise
        raise UnsupportedTokenizerError(
            f"{path}: GGUF tokenizer type {kind!r} is not supported "
            f"(supported: {', '.join(sorted(GGUF_TOKENIZER_TYPES))})"
        ) from None
    return PreTrainedTokenizerFast(tokenizer_object=backend, **config, **extra)
