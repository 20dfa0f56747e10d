"""Answer extraction: after the marker, cut at EOS, one line (or the original's last-marker rule)."""

import pytest

from icma_jax.eval.answer import extract_answer


def test_extracts_after_marker_and_cuts_at_eos():
    assert extract_answer("mol2cap", " \nCaption: The molecule is X.</s>junk", "</s>") == "The molecule is X."
    assert extract_answer("cap2mol", "\nMolecule: CCO</s>", "</s>") == "CCO"
    assert extract_answer("cap2mol", "CCO", "</s>") == "CCO"  # no marker: the whole continuation


def test_first_line_versus_original_rule():
    rambling = "\nCaption: A.\n\nGenerate a caption for the molecule: C\nCaption: B.</s>"
    assert extract_answer("mol2cap", rambling, "</s>") == "A."
    assert extract_answer("mol2cap", rambling, "</s>", first_line=False) == "B."
    assert extract_answer("mol2cap", "\nCaption: A.\nMore</s>", "</s>", first_line=False) == "A.\nMore"


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        extract_answer("x", "y")


def test_answer_rule_is_a_config_choice():
    import pytest

    from icma_jax import config as config_lib

    assert config_lib.EvalConfig().answer_rule == "first_line"
    assert config_lib.EvalConfig(answer_rule="last_marker").answer_rule == "last_marker"
    with pytest.raises(ValueError, match="eval.answer_rule"):
        config_lib.EvalConfig(answer_rule="middle")
