"""MolT5 prediction files: round trip, '[CLS] ' stripping, and every bad-input error (file, line)."""

import pathlib

import pytest

from icma_jax.eval.predictions import PredictionFormatError, read_predictions, write_predictions


def test_round_trip_keeps_strings_verbatim(tmp_path: pathlib.Path):
    inputs = ['C[C@]\\\\4(C)CC"O', "CCO"]  # ChEBI's literal doubled backslash and a quote survive QUOTE_NONE
    refs = ['The molecule is "quoted".', "An alcohol."]
    outputs = ["", "An alcohol ."]
    path = tmp_path / "sub" / "m2c.tsv"
    assert write_predictions(path, "mol2cap", inputs, refs, outputs) == 0
    assert path.read_text(encoding="utf-8").splitlines()[0] == "SMILES\tground truth\toutput"
    p = read_predictions(path)
    assert (p.task, p.inputs, p.refs, p.outputs, p.lines) == (
        "mol2cap", tuple(inputs), tuple(refs), tuple(outputs), (2, 3))
    assert len(p) == 2 and p.cls_stripped == 0


def test_cap2mol_header_and_cls_prefix_only_stripped_for_mol2cap(tmp_path: pathlib.Path):
    m2c = tmp_path / "m2c.tsv"
    m2c.write_text("SMILES\tground truth\toutput\nCCO\tAn alcohol.\t[CLS] An alcohol.\nCC\tx\t[CLS]y\n",
                   encoding="utf-8")
    p = read_predictions(m2c)
    assert p.outputs == ("An alcohol.", "[CLS]y") and p.cls_stripped == 1
    c2m = tmp_path / "c2m.tsv"
    c2m.write_text("description\tground truth\toutput\nAn alcohol.\tCCO\t[CLS] CCO\r\n", encoding="utf-8")
    p = read_predictions(c2m)
    assert p.task == "cap2mol" and p.outputs == ("[CLS] CCO",) and p.cls_stripped == 0


def test_generated_newlines_and_tabs_become_spaces_and_are_counted(tmp_path: pathlib.Path):
    path = tmp_path / "c.tsv"
    with pytest.warns(UserWarning, match="1 outputs had tabs/newlines"):
        n = write_predictions(path, "mol2cap", ["CCO", "CC"], ["a", "b"], ["line one\nline\ttwo", "fine"])
    assert n == 1
    assert read_predictions(path).outputs == ("line one line two", "fine")
    with pytest.raises(ValueError, match="row 1 field 'ground truth' contains a tab"):
        write_predictions(path, "mol2cap", ["CCO", "CC"], ["a", "b\tc"], ["x", "y"])
    with pytest.raises(ValueError, match="lengths differ"):
        write_predictions(path, "mol2cap", ["CCO"], ["a", "b"], ["x"])
    with pytest.raises(ValueError, match="unknown task"):
        write_predictions(path, "smiles2iupac", ["CCO"], ["a"], ["x"])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"empty file"),
        (b"SMILES\tground truth\toutput\n", r"header only, no rows"),
        (b"SMILES\tground_truth\toutput\nCCO\ta\tb\n", r":1: header is 'SMILES\\tground_truth\\toutput', expected"),
        (b"SMILES\tground truth\toutput\nCCO\ta\tb\nCCO\ta\n", r":3: 2 tab-separated fields, expected 3"),
        (b"SMILES\tground truth\toutput\nCCO\ta\tb\tc\n", r":2: 4 tab-separated fields"),
        (b"SMILES\tground truth\toutput\nCCO\ta\tb\n\nCC\ta\tb\n", r":3: blank line"),
        (b"SMILES\tground truth\toutput\nCCO\ta\tb\nCCO\tcaf\xe9\tb\n", r":3: not UTF-8 \(byte 0xe9 at column 8\)"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: pathlib.Path, content: bytes, message: str):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    with pytest.raises(PredictionFormatError, match=message) as err:
        read_predictions(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: pathlib.Path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_predictions(tmp_path / "nope.tsv")
