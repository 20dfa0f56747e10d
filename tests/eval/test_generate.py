"""Generation vs transformers `generate` (greedy, beam, EOS per row), HF logits processors, compile-once."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from icma_jax.eval import generate as gen_lib  # noqa: E402
from icma_jax.eval.generate import GenerationConfig, generate_tokens  # noqa: E402
from icma_jax.eval.sampling import process_logits  # noqa: E402
from icma_jax.models.loading import load_model  # noqa: E402

pytestmark = pytest.mark.torch
VOCAB = 96


def _tiny(tmp_path, family, **kw):
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "opt":
        model = transformers.OPTForCausalLM(transformers.OPTConfig(**common, ffn_dim=64, word_embed_proj_dim=32))
    else:
        cls, cfg_cls = {"llama": (transformers.LlamaForCausalLM, transformers.LlamaConfig),
                        "mistral": (transformers.MistralForCausalLM, transformers.MistralConfig)}[family]
        model = cls(cfg_cls(**common, intermediate_size=64, num_key_value_heads=2, **kw))
    model.eval()
    with torch.no_grad():  # a sharper distribution makes greedy / beam choices robust to rounding
        model.get_output_embeddings().weight.mul_(8.0)
    model.save_pretrained(tmp_path / family)
    return model, load_model(str(tmp_path / family), tokenizer=False)


def _prompts(lengths=(5, 3, 7), p=8, seed=0):
    rng = np.random.default_rng(seed)
    tokens = np.zeros((len(lengths), p), np.int32)
    mask = np.zeros_like(tokens)
    for i, n in enumerate(lengths):
        tokens[i, p - n:] = rng.integers(3, VOCAB, n)
        mask[i, p - n:] = 1
    return tokens, mask


def _hf_generate(model, tokens, mask, n, eos=2, **kw):
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(tokens, dtype=torch.long),
                             attention_mask=torch.tensor(mask, dtype=torch.long), max_new_tokens=n, min_new_tokens=0,
                             pad_token_id=0, eos_token_id=eos, do_sample=False, **kw)
    new = np.pad(out[:, tokens.shape[1]:].numpy(), ((0, 0), (0, n - out.shape[1] + tokens.shape[1])))
    for row in new:  # HF beam search fills after EOS with EOS, greedy with pad: compare up to EOS, pad after
        hit = np.flatnonzero(np.isin(row, [] if eos is None else [eos]))
        if hit.size:
            row[hit[0] + 1:] = 0
    return new


def _ours(lm, tokens, mask, gen, eos=(2,), layout=None):
    module, params = (lm.module, lm.params) if layout is None else layout
    with jax.default_matmul_precision("highest"):
        return generate_tokens(module, params, tokens, mask, gen, eos_ids=eos, pad_id=0)


@pytest.mark.parametrize("family,kw", [("opt", {}), ("llama", {}), ("mistral", {"sliding_window": 4})])
def test_greedy_matches_transformers(tmp_path, family, kw):
    model, lm = _tiny(tmp_path, family, **kw)
    tokens, mask = _prompts()
    ref = _hf_generate(model, tokens, mask, 10)
    gen = GenerationConfig(max_new_tokens=10)
    np.testing.assert_array_equal(_ours(lm, tokens, mask, gen), ref)
    layout = gen_lib.decoding_layout(lm.module, lm.params)  # the layout evaluation decodes with
    assert "layers" not in layout[1] and "qkv_proj" in layout[1]["layers_1"]["self_attn"]
    np.testing.assert_array_equal(_ours(lm, tokens, mask, gen, layout=layout), ref)


def test_greedy_stops_at_eos_per_row_and_repetition_penalty(tmp_path):
    model, lm = _tiny(tmp_path, "llama")
    tokens, mask = _prompts()
    free = _hf_generate(model, tokens, mask, 8, eos=None)
    eos = int(free[0, 2])  # a token row 0 emits at step 2 becomes EOS: row 0 must stop there, others later/never
    ref = _hf_generate(model, tokens, mask, 8, eos=eos)
    ours = _ours(lm, tokens, mask, GenerationConfig(max_new_tokens=8), eos=(eos,))
    np.testing.assert_array_equal(ours, ref)
    assert (ours[0, 3:] == 0).all()
    ref_rp = _hf_generate(model, tokens, mask, 8, repetition_penalty=1.8)
    ours_rp = _ours(lm, tokens, mask, GenerationConfig(max_new_tokens=8, repetition_penalty=1.8))
    np.testing.assert_array_equal(ours_rp, ref_rp)
    assert not np.array_equal(ours_rp, _ours(lm, tokens, mask, GenerationConfig(max_new_tokens=8)))


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_beam_search_matches_transformers(tmp_path, family):
    model, lm = _tiny(tmp_path, family)
    tokens, mask = _prompts()
    ref = _hf_generate(model, tokens, mask, 6, num_beams=3, length_penalty=1.0, early_stopping=False)
    ours = _ours(lm, tokens, mask, GenerationConfig(max_new_tokens=6, num_beams=3))
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(_ours(lm, tokens, mask, GenerationConfig(max_new_tokens=6, num_beams=3),
                                        layout=gen_lib.decoding_layout(lm.module, lm.params)), ref)


def test_processors_match_transformers():
    from transformers.generation.logits_process import (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                                                        TopKLogitsWarper, TopPLogitsWarper)

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 50)).astype(np.float32) * 3
    ids = rng.integers(0, 50, (3, 6))
    t_ids, t_logits = torch.tensor(ids), torch.tensor(logits)
    ref = RepetitionPenaltyLogitsProcessor(0.8)(t_ids, t_logits.clone())
    for proc in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(40), TopPLogitsWarper(0.85)):
        ref = proc(t_ids, ref)
    seen = np.zeros((3, 50), bool)
    seen[np.arange(3)[:, None], ids] = True
    ours = np.asarray(process_logits(jnp.asarray(logits), jnp.asarray(seen), sample=True, temperature=0.7, top_k=40,
                                     top_p=0.85, penalty=0.8))
    ref = ref.numpy()
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
    np.testing.assert_allclose(ours[~np.isinf(ours)], ref[~np.isinf(ref)], rtol=1e-6)
    assert np.isinf(ours).sum() > 3 * 10  # the filters did remove tokens


def test_sampling_seeded_and_compiles_once_per_bucket(tmp_path, caplog):
    _, lm = _tiny(tmp_path, "llama")
    gen = GenerationConfig(max_new_tokens=6, greedy=False, temperature=1.5, top_k=20, top_p=0.95, seed=3)
    tokens, mask = _prompts()

    def compiles() -> int:  # XLA compilations of the sampling loop, from jax's public compile log
        return sum(r.getMessage().startswith("Compiling jit(_sample_loop)") for r in caplog.records)

    with caplog.at_level(logging.WARNING), jax.log_compiles():
        a = _ours(lm, tokens, mask, gen)
        b = _ours(lm, *_prompts(lengths=(2, 8, 4), seed=1), gen)  # same bucket, different prompts
        a2 = _ours(lm, tokens, mask, gen)
        assert compiles() == 1
        np.testing.assert_array_equal(a, a2)
        c = _ours(lm, tokens, mask, GenerationConfig(**{**gen.__dict__, "seed": 4}))
        assert compiles() == 1  # the seed is data, not part of the program
    assert not np.array_equal(a, c) and not np.array_equal(a, b)
    assert ((a >= 0) & (a < VOCAB)).all()


def test_top_k_one_sampling_is_greedy(tmp_path):
    _, lm = _tiny(tmp_path, "mistral")
    tokens, mask = _prompts()
    greedy = _ours(lm, tokens, mask, GenerationConfig(max_new_tokens=5))
    np.testing.assert_array_equal(_ours(lm, tokens, mask, GenerationConfig(max_new_tokens=5, greedy=False, top_k=1,
                                                                            temperature=2.0, seed=9)), greedy)


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_decoding_layout_merges_lora_and_fuses_kernels(tmp_path, family):
    from icma_jax.models.lora import LoraConfig, init_lora

    _, lm = _tiny(tmp_path, family)
    tokens, mask = _prompts()
    lcfg = LoraConfig.for_family(family, rank=4, alpha=8.0, dropout=0.0)
    module = lm.module.clone(lora=lcfg)
    lora = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(3), x.shape), init_lora(module, lcfg,
                                                                                                  jax.random.key(0)))
    gen = GenerationConfig(max_new_tokens=8)
    with jax.default_matmul_precision("highest"):
        unmerged = generate_tokens(module, lm.params, tokens, mask, gen, eos_ids=(2,), pad_id=0, lora_params=lora)
    fast_module, fast = gen_lib.decoding_layout(module, lm.params, lora)
    assert fast_module.lora is None and fast_module.fused
    fused = {"llama": {"qkv_proj", "o_proj"}, "opt": {"qkv_proj", "out_proj"}}[family]
    assert set(fast["layers_0"]["self_attn"]) == fused
    assert family == "opt" or set(fast["layers_0"]["mlp"]) == {"gate_up_proj", "down_proj"}
    np.testing.assert_array_equal(_ours(lm, tokens, mask, gen, layout=(fast_module, fast)), unmerged)
    with pytest.raises(ValueError, match="exactly when"):
        gen_lib.decoding_layout(module, lm.params)
