"""The embedded SmolLM2-135M-Instruct (Q4_1 GGUF) vs transformers' PyTorch model loaded from the same file."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_deps

from icma_jax.eval.generate import GenerationConfig, generate, generate_tokens, pad_left
from icma_jax.models.loading import load_model
from icma_jax.models.registry import resolve_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")
pytestmark = [pytest.mark.torch, pytest.mark.slow]

PROMPTS = ["The molecule is a", "Caffeine is"]


@pytest.fixture(scope="module")
def pair():
    try:
        source = resolve_model("smollm2-135m")
    except FileNotFoundError as e:
        reference_deps.missing(f"{e} (make install-test installs it)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torch's thread pool crawls on an oversubscribed CI machine; 1 thread is fastest
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(source.directory), gguf_file=source.gguf_file).eval()
    yield ref, load_model("smollm2-135m")
    torch.set_num_threads(threads)


def test_logits_match_transformers_from_same_gguf(pair):
    ref, lm = pair
    ids = [lm.tokenizer(p)["input_ids"] for p in PROMPTS]
    tokens, mask = pad_left(ids, lm.tokenizer.pad_token_id, 8)
    t, m = torch.tensor(tokens, dtype=torch.long), torch.tensor(mask, dtype=torch.long)
    with torch.no_grad():
        want = ref(input_ids=t, attention_mask=m, position_ids=(m.cumsum(-1) - 1).clamp(min=0)).logits.numpy()
    with jax.default_matmul_precision("highest"):
        got = np.asarray(lm.module.apply({"params": lm.params}, jnp.asarray(tokens), jnp.asarray(mask)))
    real = mask.astype(bool)
    err = np.abs(got[real] - want[real]).max()
    assert err <= 1e-3, f"max |logit diff| {err:.2e}"
    assert lm.config.tie_embeddings and lm.config.n_kv_heads == 3 and lm.config.rope_theta == 100000.0


def test_greedy_continuation_identical(pair):
    ref, lm = pair
    n = 8
    ids = lm.tokenizer(PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        want = ref.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    want_text = lm.tokenizer.decode(want[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    tokens, mask = pad_left([ids["input_ids"][0].tolist()], lm.tokenizer.pad_token_id, 8)
    got = generate_tokens(lm.module, lm.params, tokens, mask, GenerationConfig(max_new_tokens=n, length_bucket=8),
                          eos_ids=lm.config.eos_token_ids, pad_id=lm.tokenizer.pad_token_id)
    np.testing.assert_array_equal(got[0], want[0, ids["input_ids"].shape[1]:].numpy())
    assert generate(lm, [PROMPTS[0]], GenerationConfig(max_new_tokens=n, length_bucket=8)) == [want_text]
