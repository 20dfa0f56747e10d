"""`icma-jax generate` prints what the library's `generate` returns, for greedy, sampling and beam search
(a tiny random Llama saved by our own exporter: no torch needed)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from icma_jax.cli import main
from icma_jax.eval.generate import GenerationConfig, generate
from icma_jax.models.config import LMConfig
from icma_jax.models.hf_weights import save_hf_checkpoint
from icma_jax.models.loading import load_model
from icma_jax.models.transformer import build_model

VOCAB = 64
PROMPTS = ["w5 w9 w17", "w3 w40"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    cfg = LMConfig(family="llama", vocab_size=VOCAB, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                   d_ff=64, max_positions=64, bos_token_id=1, eos_token_ids=(2,), pad_token_id=0)
    tok0 = jnp.zeros((1, 1), jnp.int32)
    params = nn.meta.unbox(build_model(cfg).init({"params": jax.random.key(0)}, tok0, tok0)["params"])
    params = jax.tree.map(lambda x: 4 * x if x.ndim >= 2 else x, params)  # peaked enough that decoders disagree
    return save_hf_checkpoint(tmp_path_factory.mktemp("cli_generate") / "llama", params, cfg, fast)


def _cli(tiny_dir, capsys, *flags: str) -> list[str]:
    args = ["generate", "--model", str(tiny_dir), "--max-new-tokens", "6"]
    for p in PROMPTS:
        args += ["--prompt", p]
    assert main(args + list(flags)) == 0
    return capsys.readouterr().out.splitlines()


def test_cli_generate_equals_library_for_greedy_sampling_and_beams(tiny_dir, capsys):
    lm = load_model(str(tiny_dir))
    greedy = generate(lm, PROMPTS, GenerationConfig(max_new_tokens=6))
    sampled = generate(lm, PROMPTS, GenerationConfig(max_new_tokens=6, greedy=False, temperature=0.9, top_k=20,
                                                     top_p=0.9, repetition_penalty=1.3, seed=1))
    beams = generate(lm, PROMPTS, GenerationConfig(max_new_tokens=6, num_beams=3))
    assert sampled != greedy and beams != greedy  # the three decoders are told apart on these prompts
    assert _cli(tiny_dir, capsys, "--greedy") == greedy
    assert _cli(tiny_dir, capsys, "--temperature", "0.9", "--top-k", "20", "--top-p", "0.9",
                "--repetition-penalty", "1.3", "--seed", "1") == sampled
    assert _cli(tiny_dir, capsys, "--num-beams", "3") == beams
