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
