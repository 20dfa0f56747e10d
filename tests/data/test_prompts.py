"""ICMA prompt templates are byte-exact; label masks and both truncation policies are counted."""

import numpy as np
import pytest

from icma_jax.data import prompts
from icma_jax.data.prompts import IGNORE, Pair

Q = Pair("CCO", "The molecule is ethanol.")
E1 = Pair("CC(=O)O", "The molecule is acetic acid.")  # most similar
E2 = Pair("C", "The molecule is methane.")


def test_mol2cap_templates_byte_exact():
    full = prompts.full_text("mol2cap", Q, [E1, E2], "</s>")
    assert full == (
        "Generate a caption for the molecule: C\nCaption: The molecule is methane.\n\n"
        "Generate a caption for the molecule: CC(=O)O\nCaption: The molecule is acetic acid.\n\n"
        "Based on the above examples, analyse the similarities and differences between the examples and "
        "finally generate a caption for the molecule: CCO. \nCaption: The molecule is ethanol.</s>")
    assert prompts.source_text("mol2cap", Q, [E1, E2]) == full[:full.index("CCO. \n") + 4]


def test_cap2mol_templates_byte_exact():
    full = prompts.full_text("cap2mol", Q, [E1], "</s>")
    assert full == (
        "Generate a molecule for the caption: The molecule is acetic acid.\nMolecule: CC(=O)O\n\n"
        "Based on the above examples, analyse the similarities and differences between the examples and "
        "finally generate a molecule for the caption: The molecule is ethanol.\nMolecule: CCO</s>")
    assert prompts.source_text("cap2mol", Q, [E1]).endswith("caption: The molecule is ethanol.")


def test_reversal_flag_and_zero_shot():
    fwd = prompts.raw_prompt("mol2cap", Q, [E1, E2], reverse=False)
    assert fwd.index("CC(=O)O") < fwd.index("for the molecule: C\n")
    assert prompts.full_text("mol2cap", Q, [], "</s>", zero_shot=True) == (
        "Generate a caption for the molecule: CCO\nCaption: The molecule is ethanol.</s>")
    assert prompts.full_text("cap2mol", Q, [], "<|end_of_text|>", zero_shot=True) == (
        "Generate a molecule that: The molecule is ethanol.\nMolecule: CCO<|end_of_text|>")
    with pytest.raises(ValueError, match="zero-shot"):
        prompts.raw_prompt("mol2cap", Q, [E1], zero_shot=True)
    with pytest.raises(ValueError, match="unknown task"):
        prompts.raw_prompt("smiles2iupac", Q, [])


def test_label_mask_and_train_on_inputs(char_tokenizer):
    enc, rep = prompts.encode_train("mol2cap", Q, [E1], char_tokenizer, cutoff_len=1000)
    text = char_tokenizer.decode(enc.ids)
    assert text == "<s>" + prompts.full_text("mol2cap", Q, [E1], "</s>")
    n_src = len(prompts.source_text("mol2cap", Q, [E1])) + 1  # + BOS (one token per char)
    assert (enc.labels[:n_src] == IGNORE).all()
    np.testing.assert_array_equal(enc.labels[n_src:], enc.ids[n_src:])
    assert char_tokenizer.decode(enc.ids[n_src:]) == " \nCaption: The molecule is ethanol.</s>"
    assert rep.truncated == rep.examples_dropped == 0 and enc.n_examples == 1
    enc_all, _ = prompts.encode_train("mol2cap", Q, [E1], char_tokenizer, cutoff_len=1000, train_on_inputs=True)
    np.testing.assert_array_equal(enc_all.labels, enc.ids)


def test_drop_examples_keeps_query_and_answer(char_tokenizer):
    n_one = len(char_tokenizer(prompts.full_text("mol2cap", Q, [E1], "</s>"))["input_ids"])
    enc, rep = prompts.encode_train("mol2cap", Q, [E1, E2], char_tokenizer, cutoff_len=n_one)
    assert enc.n_examples == 1 and len(enc.ids) == n_one  # E2 (least similar) dropped, E1 kept
    assert "acetic" in char_tokenizer.decode(enc.ids) and "methane" not in char_tokenizer.decode(enc.ids)
    assert enc.ids[-1] == char_tokenizer.eos_token_id
    assert (rep.examples_dropped, rep.prompts_with_drops, rep.truncated, rep.answer_cut) == (1, 1, 0, 0)


def test_right_truncation_counts_the_cut(char_tokenizer):
    n_one = len(char_tokenizer(prompts.full_text("mol2cap", Q, [E1], "</s>"))["input_ids"])
    enc, rep = prompts.encode_train("mol2cap", Q, [E1, E2], char_tokenizer, cutoff_len=n_one, truncation="right")
    assert enc.n_examples == 2 and len(enc.ids) == n_one and enc.ids[-1] != char_tokenizer.eos_token_id
    assert (rep.truncated, rep.answer_cut, rep.prompt_cut, rep.examples_dropped) == (1, 1, 1, 0)
    # even the bare query does not fit: drop_examples falls back to a right cut and says so
    enc, rep = prompts.encode_train("mol2cap", Q, [E1], char_tokenizer, cutoff_len=20)
    assert len(enc.ids) == 20 and enc.n_examples == 0 and (rep.examples_dropped, rep.answer_cut) == (1, 1)
    total = prompts.PromptReport()
    total.add(rep)
    total.add(rep)
    assert total.prompts == 2 and "2 with the answer cut" in total.summary()


def test_encode_source_drops_then_cuts_from_the_left(char_tokenizer):
    src = prompts.source_text("cap2mol", Q, [E1])
    ids, kept, rep = prompts.encode_source("cap2mol", Q, [E1, E2], char_tokenizer, max_len=len(src) + 1)
    assert kept == 1 and char_tokenizer.decode(ids) == "<s>" + src and rep.examples_dropped == 1
    ids, kept, rep = prompts.encode_source("cap2mol", Q, [E1], char_tokenizer, max_len=10)
    assert kept == 0 and len(ids) == 10 and rep.prompt_cut == 1
    assert char_tokenizer.decode(ids).endswith("ethanol.")
