"""RoPE (default, linear, llama3 scaling) against transformers on sequences longer than the scaling's original
context, where the scaled frequencies matter, at a relative tolerance near fp32 round-off."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icma_jax.models.loading import load_model

pytestmark = pytest.mark.torch

ORIGINAL_CONTEXT = 16
SCALINGS = {
    "default": None,
    "linear": {"rope_type": "linear", "factor": 4.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": ORIGINAL_CONTEXT},
}
LENGTHS = (60, 37, 48)  # every row runs past ORIGINAL_CONTEXT
RTOL = 2e-5  # of the largest |logit|


@pytest.mark.parametrize("rope", sorted(SCALINGS))
def test_rope_logits_match_transformers_past_original_context(tmp_path, hf, rope):
    torch = hf.torch
    kw = dict(max_position_embeddings=128, head_dim=16, num_attention_heads=2, num_key_value_heads=1)
    if SCALINGS[rope]:
        kw["rope_scaling"] = SCALINGS[rope]
    torch.manual_seed(0)
    model = hf.transformers.LlamaForCausalLM(hf.tiny_hf_config("llama", **kw)).eval()
    with torch.no_grad():  # O(1) logits, so a relative tolerance means something
        model.lm_head.weight.mul_(10.0)
    model.save_pretrained(tmp_path / rope)
    tokens, mask = hf.padded_batch(seed=1, lengths=LENGTHS)
    ref = hf.torch_logits(model, tokens, mask)
    lm = load_model(str(tmp_path / rope), tokenizer=False)
    assert lm.config.rope_scaling.rope_type == rope
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(lm.module.apply({"params": lm.params}, jnp.asarray(tokens), jnp.asarray(mask)))
    real = mask.astype(bool)
    scale = np.abs(ref[real]).max()
    assert 1.0 <= scale <= 10.0, f"logits of scale {scale:.2f} are not O(1)"
    err = np.abs(ours[real] - ref[real]).max() / scale
    assert err <= RTOL, f"{rope}: max |logit diff| / max |logit| = {err:.2e} > {RTOL:.0e}"
