"""Our Flax OPT / Llama / Mistral vs transformers' PyTorch models: logits (fp32, bf16) and greedy tokens."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icma_jax.models.loading import load_model

pytestmark = pytest.mark.torch

CASES = {
    "opt-gelu-tied": ("opt", {}),
    "opt-relu-untied-postnorm": ("opt", dict(activation_function="relu", tie_word_embeddings=False,
                                             do_layer_norm_before=False)),
    "llama-gqa-untied-theta": ("llama", dict(rope_theta=500.0, tie_word_embeddings=False)),
    "llama3-scaling-tied-bias": ("llama", dict(tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
                                               rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}, rope_theta=10000.0)),
    "mistral-window": ("mistral", dict(sliding_window=3)),
    "mistral-no-window": ("mistral", dict(sliding_window=None, head_dim=16)),
}


def _ours(directory, tokens, mask, dtype="float32"):
    lm = load_model(str(directory), dtype=dtype, param_dtype=dtype, tokenizer=False)
    with jax.default_matmul_precision("highest"):
        return lm, np.asarray(lm.module.apply({"params": lm.params}, jnp.asarray(tokens), jnp.asarray(mask)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers_fp32(tmp_path, hf, case):
    family, kw = CASES[case]
    model, directory = hf.save_tiny(tmp_path, family, **kw)
    tokens, mask = hf.padded_batch()
    ref = hf.torch_logits(model, tokens, mask)
    _, ours = _ours(directory, tokens, mask)
    real = mask.astype(bool)
    err = np.abs(ours[real] - ref[real]).max()
    assert err <= 1e-4, f"{case}: max |logit diff| = {err:.2e} on real tokens"


def test_sliding_window_changes_logits(tmp_path, hf):
    """The window must matter: the same weights without it give different logits beyond the window."""
    tokens, mask = hf.padded_batch(lengths=(9, 9, 9))
    _, d_win = hf.save_tiny(tmp_path / "a", "mistral", sliding_window=3)
    _, d_full = hf.save_tiny(tmp_path / "b", "mistral", sliding_window=None)
    _, win = _ours(d_win, tokens, mask)
    _, full = _ours(d_full, tokens, mask)
    np.testing.assert_allclose(win[:, :3], full[:, :3], atol=1e-5)
    assert np.abs(win[:, 3:] - full[:, 3:]).max() > 1e-3


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_logits_bf16_within_tolerance(tmp_path, hf, family):
    """bf16 params + compute vs the fp32 reference: max |diff| <= 0.1 relative to the logits' scale."""
    model, directory = hf.save_tiny(tmp_path, family)
    tokens, mask = hf.padded_batch()
    ref = hf.torch_logits(model, tokens, mask)
    _, ours = _ours(directory, tokens, mask, dtype="bfloat16")
    real = mask.astype(bool)
    err = np.abs(ours[real] - ref[real]).max() / np.abs(ref[real]).max()
    assert err <= 0.05, f"bf16 relative error {err:.3f}"


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_head_positions_pick_rows_of_the_full_logits(tmp_path, hf, family):
    _, directory = hf.save_tiny(tmp_path, family)
    tokens, mask = hf.padded_batch()
    lm, full = _ours(directory, tokens, mask)
    with jax.default_matmul_precision("highest"):
        pos_BxW = np.stack([np.arange(2, 5)] * len(tokens))
        pos_BxW[0] = [6, 0, 3]  # any positions, in any order, per row
        picked = lm.module.apply({"params": lm.params}, jnp.asarray(tokens), jnp.asarray(mask), head_pos_BxW=pos_BxW)
    np.testing.assert_allclose(np.asarray(picked), np.take_along_axis(full, pos_BxW[:, :, None], axis=1), atol=1e-5)
