"""The torch-free GGUF tokenizer gives transformers' GGUF tokenizer's ids, specials, padding and decoding."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from icma_jax.data import prompts
from icma_jax.data.records import load_split
from icma_jax.models.gguf_tokenizer import UnsupportedTokenizerError, load_gguf_tokenizer
from icma_jax.models.registry import resolve_model
from icma_jax.models.tokenizer import load_tokenizer

gguf = pytest.importorskip("gguf")

# A sentencepiece ("llama") vocabulary: control/byte tokens, then pieces scored best-first.
_SP_PIECES = ["\u2581", "\u2581the", "\u2581mol", "ecule", "\u2581is", "\u2581a", "C", "O", "N", "c", "1", "(", ")",
              "=", "\u2581acid", "\u2581C", "CC", "\u2581Gen", "erate", "\u2581caption", ":", "\u2581for", "e", "r",
              "a", "t", "i", "o", "n", "s", "l", "u", "m", "h", "d", "p", "g", "\u2581\u2581"]


def write_gguf(path: pathlib.Path, model: str, tokens: list[str], scores: list[float], types: list[int]) -> None:
    """A one-tensor Llama GGUF file carrying the given tokenizer."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(4)
    w.add_tokenizer_model(model)
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def sentencepiece_gguf(path: pathlib.Path, model: str = "llama") -> pathlib.Path:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + _SP_PIECES
    scores = [0.0] * 259 + [-float(i) for i in range(len(_SP_PIECES))]
    types = [2, 3, 3] + [6] * 256 + [1] * len(_SP_PIECES)  # unknown, control, byte, normal
    write_gguf(path, model, tokens, scores, types)
    return path


@pytest.fixture(scope="module")
def chebi_texts(shared_data) -> list[str]:
    """Every ChEBI-20 test caption and SMILES, and ICMA prompts (both tasks, in-context and zero-shot)."""
    test = load_split(shared_data / "chebi20" / "test.txt")
    texts = [*test.texts, *test.smiles]
    pairs = [prompts.Pair(s, t) for s, t in zip(test.smiles, test.texts)]
    for task in prompts.MARKERS:
        for i in range(0, 60, 3):
            examples = pairs[i + 1:i + 3]
            texts.append(prompts.full_text(task, pairs[i], examples, eos="<|im_end|>"))
            texts.append(prompts.source_text(task, pairs[i], examples))
            texts.append(prompts.source_text(task, pairs[i], [], zero_shot=True))
    return texts


def _same_behaviour(ours, ref, texts: list[str]) -> None:
    for name in ("bos_token", "eos_token", "unk_token", "pad_token", "add_bos_token", "add_eos_token",
                 "all_special_tokens", "chat_template"):
        assert getattr(ours, name, None) == getattr(ref, name, None), name
    assert ours.get_vocab() == ref.get_vocab()
    ids = ours(texts)["input_ids"]
    assert ids == ref(texts)["input_ids"]
    assert ours.batch_decode(ids) == ref.batch_decode(ids)
    assert ours.batch_decode(ids, skip_special_tokens=True) == ref.batch_decode(ids, skip_special_tokens=True)
    ref.padding_side = ours.padding_side = "left"
    if ref.pad_token is None:
        ref.pad_token = ours.pad_token = ref.eos_token
    batch = texts[:7]
    assert ours(batch, padding=True)["input_ids"] == ref(batch, padding=True)["input_ids"]
    assert ours(batch, padding=True)["attention_mask"] == ref(batch, padding=True)["attention_mask"]


@pytest.mark.torch
@pytest.mark.slow
def test_smollm2_ids_equal_transformers_on_chebi20_test(chebi_texts, tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")  # transformers' own GGUF reader imports torch
    source = resolve_model("smollm2-135m")
    ref = transformers.AutoTokenizer.from_pretrained(str(source.directory), gguf_file=source.gguf_file)
    ours = load_gguf_tokenizer(source.path)
    _same_behaviour(ours, ref, chebi_texts)
    ours.save_pretrained(tmp_path / "saved")  # the saved tokenizer reloads with plain transformers
    reloaded = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    assert reloaded(chebi_texts[:50])["input_ids"] == ref(chebi_texts[:50])["input_ids"]


@pytest.mark.torch
def test_sentencepiece_ids_equal_transformers(chebi_texts, tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    path = sentencepiece_gguf(tmp_path / "sp.gguf")
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    ours = load_gguf_tokenizer(path)
    assert ours("the acid")["input_ids"][0] == 1  # llama.cpp adds BOS to a sentencepiece vocabulary
    _same_behaviour(ours, ref, chebi_texts[:200] + chebi_texts[-60:] + ["  two spaces", "\u00fcml\u00e4ut"])


def test_unsupported_tokenizer_type_is_one_line_error(tmp_path):
    path = tmp_path / "rwkv.gguf"
    write_gguf(path, "rwkv", ["<unk>", "<s>", "</s>", "a"], [0.0] * 4, [2, 3, 3, 1])
    with pytest.raises(UnsupportedTokenizerError, match=r"rwkv\.gguf: GGUF tokenizer type 'rwkv' is not supported"
                       r" \(supported: .*gpt2.*llama"):
        load_gguf_tokenizer(path)


def test_load_tokenizer_pads_left_from_gguf(tmp_path):
    tok = load_tokenizer(resolve_model(str(sentencepiece_gguf(tmp_path / "m.gguf"))))
    assert tok.padding_side == "left" and tok.pad_token == "</s>"
    ids = tok(["the acid", "C"], padding=True)["input_ids"]
    assert ids[1][:len(ids[0]) - 2] == [tok.pad_token_id] * (len(ids[0]) - 2)
