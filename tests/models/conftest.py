"""Tiny random transformers models saved to disk for the model tests (the `hf` fixture skips without torch)."""

from __future__ import annotations

import numpy as np
import pytest

VOCAB = 128


def tiny_hf_config(family: str, **kw):
    """A 2-layer config of `family`; extra keywords override."""
    import transformers

    common = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "opt":
        cfg = dict(common, ffn_dim=64, word_embed_proj_dim=32, activation_function="gelu", enable_bias=True,
                   do_layer_norm_before=True)
        return transformers.OPTConfig(**{**cfg, **kw})
    cfg = dict(common, intermediate_size=64, num_key_value_heads=2, rms_norm_eps=1e-5)
    if family == "llama":
        return transformers.LlamaConfig(**{**cfg, **kw})
    return transformers.MistralConfig(**{**cfg, "sliding_window": None, **kw})


def save_tiny(tmp_path, family: str, seed: int = 0, **kw):
    """Random-init a tiny transformers CausalLM, save it (safetensors), return (torch model, directory)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cls = {"opt": transformers.OPTForCausalLM, "llama": transformers.LlamaForCausalLM,
           "mistral": transformers.MistralForCausalLM}[family]
    model = cls(tiny_hf_config(family, **kw)).eval()
    with torch.no_grad():  # larger-than-default weights so differences in the maths show up in the logits
        for p in model.parameters():
            if p.ndim == 1 and p.numel() > 1:
                p.add_(0.1 * torch.randn_like(p))
    directory = tmp_path / family
    model.save_pretrained(directory)
    return model, directory


def padded_batch(seed: int = 0, lengths=(7, 4, 9)):
    """Left-padded token ids (pad 0) and mask, B x L."""
    rng = np.random.default_rng(seed)
    L = max(lengths)
    tokens = np.zeros((len(lengths), L), np.int32)
    mask = np.zeros((len(lengths), L), np.int32)
    for i, n in enumerate(lengths):
        tokens[i, L - n:] = rng.integers(3, VOCAB, n)
        mask[i, L - n:] = 1
    return tokens, mask


def torch_logits(model, tokens, mask) -> np.ndarray:
    """Reference logits with position ids from the mask (the way `generate` builds them)."""
    import torch
    import transformers

    t = torch.tensor(tokens, dtype=torch.long)
    m = torch.tensor(mask, dtype=torch.long)
    kw = {}
    if not isinstance(model, transformers.OPTForCausalLM):
        pos = m.cumsum(-1) - 1
        kw["position_ids"] = pos.masked_fill(m == 0, 1)
    with torch.no_grad():
        return model(input_ids=t, attention_mask=m, **kw).logits.float().numpy()


@pytest.fixture
def hf():
    """The helpers above: `hf.save_tiny`, `hf.padded_batch`, `hf.torch_logits`, `hf.torch`, `hf.transformers`."""
    import types

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    return types.SimpleNamespace(save_tiny=save_tiny, padded_batch=padded_batch, torch_logits=torch_logits,
                                 tiny_hf_config=tiny_hf_config, torch=torch, transformers=transformers, VOCAB=VOCAB)
