"""GGUF (llama.cpp) checkpoints: metadata -> HF config dict, tensors dequantised with `gguf`, q/k un-permuted."""

from __future__ import annotations

import functools
import pathlib
import re
from typing import Any

import numpy as np

# GGUF tensor name (per block) -> HF Llama module name.
_BLOCK = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_TOP = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight"}
_SUPPORTED_ARCH = ("llama",)


def _undo_qk_permute(w_OxI: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's converter interleaves rotary halves per head; restore HF's rotate-half layout."""
    half = w_OxI.shape[0] // n_heads // 2
    return w_OxI.reshape(n_heads, half, 2, *w_OxI.shape[1:]).swapaxes(1, 2).reshape(w_OxI.shape)


class GGUFSource:
    """Lazy HF-named tensors from a `.gguf` file (dequantised to fp32 on demand)."""

    def __init__(self, path: str | pathlib.Path):
        import gguf

        self.where = str(path)
        self._gguf = gguf
        self._reader = gguf.GGUFReader(str(path))
        self._fields = self._reader.fields
        arch = self.meta("general.architecture")
        if arch not in _SUPPORTED_ARCH:
            raise ValueError(f"{path}: field 'general.architecture'={arch!r} is not supported {_SUPPORTED_ARCH}")
        self._tensors = {}
        for t in self._reader.tensors:
            m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", t.name)
            if m and m.group(2) in _BLOCK:
                self._tensors[f"model.layers.{m.group(1)}.{_BLOCK[m.group(2)]}.{m.group(3)}"] = t
            elif t.name in _TOP:
                self._tensors[_TOP[t.name]] = t
            else:
                raise ValueError(f"{path}: tensor {t.name!r} has no HF Llama equivalent")

    def meta(self, key: str, default: Any = None) -> Any:
        field = self._fields.get(key)
        return default if field is None else field.contents()

    def keys(self) -> set[str]:
        return set(self._tensors)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one leaf's shards are read by every device in turn; one load
    def get(self, key: str) -> np.ndarray:
        t = self._tensors[key]
        w = np.asarray(self._gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape(tuple(int(d) for d in reversed(t.shape)))
        if key.endswith("q_proj.weight"):
            w = _undo_qk_permute(w, self.meta("llama.attention.head_count"))
        elif key.endswith("k_proj.weight"):
            w = _undo_qk_permute(w, self.meta("llama.attention.head_count_kv"))
        return w

    def hf_config(self) -> dict[str, Any]:
        """A transformers-style Llama config dict from the GGUF metadata."""
        m = self.meta
        if m("llama.rope.scaling.type") not in (None, "none"):
            raise ValueError(f"{self.where}: field 'llama.rope.scaling.type'={m('llama.rope.scaling.type')!r} is not "
                             "supported for GGUF models")
        d, heads = int(m("llama.embedding_length")), int(m("llama.attention.head_count"))
        vocab = m("llama.vocab_size") or len(self._fields["tokenizer.ggml.tokens"].data)
        head_dim = int(m("llama.attention.key_length", d // heads))
        if int(m("llama.rope.dimension_count", head_dim)) != head_dim:
            raise ValueError(f"{self.where}: field 'llama.rope.dimension_count' != head dim (partial RoPE unsupported)")
        return {
            "model_type": "llama", "vocab_size": int(vocab), "hidden_size": d,
            "num_hidden_layers": int(m("llama.block_count")), "num_attention_heads": heads,
            "num_key_value_heads": int(m("llama.attention.head_count_kv", heads)), "head_dim": head_dim,
            "intermediate_size": int(m("llama.feed_forward_length")),
            "max_position_embeddings": int(m("llama.context_length", 2048)),
            "rms_norm_eps": float(m("llama.attention.layer_norm_rms_epsilon", 1e-5)),
            "rope_theta": float(m("llama.rope.freq_base", 10000.0)), "hidden_act": "silu",
            "tie_word_embeddings": "lm_head.weight" not in self._tensors,
            "bos_token_id": m("tokenizer.ggml.bos_token_id"), "eos_token_id": m("tokenizer.ggml.eos_token_id"),
            "pad_token_id": m("tokenizer.ggml.padding_token_id"),
        }
