"""`icma-jax generate` and `icma-jax export` on a tiny saved model with a word-level tokenizer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icma_jax.cli import main
from icma_jax.eval.generate import GenerationConfig, generate
from icma_jax.models.loading import load_model
from icma_jax.models.config import LoraConfig
from icma_jax.models.lora import init_lora
from icma_jax.models.peft import export_peft

pytestmark = pytest.mark.torch


def _save_tokenizer(directory, vocab_size):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(str(directory))


@pytest.fixture
def tiny_dir(tmp_path, hf):
    _, directory = hf.save_tiny(tmp_path, "llama")
    _save_tokenizer(directory, hf.VOCAB)
    return directory


def test_cli_generate_prints_greedy_and_beam_continuations(tiny_dir, capsys):
    lm = load_model(str(tiny_dir))
    want = generate(lm, ["w5 w9 w17"], GenerationConfig(max_new_tokens=5))
    assert want[0].strip()
    assert main(["generate", "--model", str(tiny_dir), "--prompt", "w5 w9 w17", "--greedy",
                 "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == want
    assert main(["generate", "--model", str(tiny_dir), "--prompt", "w5 w9", "--temperature", "0.7", "--top-k", "40",
                 "--top-p", "0.85", "--repetition-penalty", "0.8", "--max-new-tokens", "4", "--seed", "1"]) == 0
    assert main(["generate", "--model", str(tiny_dir), "--prompt", "w5 w9", "--num-beams", "2",
                 "--max-new-tokens", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["generate", "--model", str(tiny_dir / "nope"), "--prompt", "x", "--max-new-tokens", "2"]) == 2


def test_cli_export_merges_a_peft_adapter(tiny_dir, tmp_path, hf):
    lm = load_model(str(tiny_dir))
    lcfg = LoraConfig.for_family("llama", rank=2, alpha=4.0, dropout=0.0)
    lora = jax.tree.map(lambda x: x + 0.3, init_lora(lm.module, lcfg, jax.random.key(0)))
    export_peft(tmp_path / "adapter", lora, lcfg, lm.config)
    assert main(["export", "--model", str(tiny_dir), "--adapter", str(tmp_path / "adapter"),
                 "--out", str(tmp_path / "merged")]) == 0
    merged = load_model(str(tmp_path / "merged"))
    tokens, mask = hf.padded_batch()
    with jax.default_matmul_precision("highest"):
        want = lm.module.clone(lora=lcfg).apply({"params": lm.params, "lora": lora}, jnp.asarray(tokens),
                                                jnp.asarray(mask))
        got = merged.module.apply({"params": merged.params}, jnp.asarray(tokens), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)
    assert merged.tokenizer("w5 w6")["input_ids"] == lm.tokenizer("w5 w6")["input_ids"]


def test_generate_with_adapter_equals_merged_weights(tiny_dir, tmp_path, capsys):
    from icma_jax.models.lora import merge_lora

    lm = load_model(str(tiny_dir))
    lcfg = LoraConfig.for_family("llama", rank=2, alpha=4.0, dropout=0.0)
    lora = jax.tree.map(lambda x: x + 0.5, init_lora(lm.module, lcfg, jax.random.key(0)))
    gen = GenerationConfig(max_new_tokens=5)
    with jax.default_matmul_precision("highest"):
        adapted = generate(lm, ["w5 w9 w17", "w3"], gen, lora_params=lora, lora_config=lcfg)
        merged = generate(lm._replace(params=merge_lora(lm.params, lora, lcfg)), ["w5 w9 w17", "w3"], gen)
        base = generate(lm, ["w5 w9 w17", "w3"], gen)
    assert adapted == merged and adapted != base
    export_peft(tmp_path / "adapter", lora, lcfg, lm.config)
    assert main(["generate", "--model", str(tiny_dir), "--adapter", str(tmp_path / "adapter"), "--prompt", "w5 w9 w17",
                 "--prompt", "w3", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == adapted
