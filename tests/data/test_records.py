"""TSV loading: true row counts of every shared file, and each error path with file/line/field."""

import pathlib

import pytest

from icma_jax.data.records import DataFormatError, load_split
from icma_jax.data.sources import DATASETS, load_dataset_split

TRUE_ROWS = {  # measured on the shared files (ChEBI-20 validation really holds 3,301 rows)
    ("chebi20", "validation"): 3301, ("chebi20", "test"): 3300,
    ("pubchem324k-iupac", "train"): 11856, ("pubchem324k-iupac", "validation"): 982,
    ("pubchem324k-iupac", "test"): 1985,
    ("pubchem324k-molcap", "validation"): 1000, ("pubchem324k-molcap", "test"): 2000,
}


@pytest.mark.parametrize("dataset,split", sorted(TRUE_ROWS))
def test_true_row_counts(shared_data, dataset, split):
    s = load_dataset_split(dataset, split, shared_data, strict=True)
    assert len(s) == s.report.n_rows == TRUE_ROWS[dataset, split] == DATASETS[dataset].files[split].n_rows
    assert s.report.n_skipped == 0
    assert [r.row for r in s.records] == list(range(len(s)))
    assert s.records[0].line == 2


def test_pubchem_iupac_duplicates_are_kept_and_reported(shared_data):
    s = load_dataset_split("pubchem324k-iupac", "train", shared_data)
    assert len(s.report.duplicate_cids) == 2
    for cid, rows in s.report.duplicate_cids.items():
        assert len(rows) == 2 and all(s.records[r].cid == cid for r in rows)
    assert "2 duplicated CIDs" in s.report.summary()


def test_strings_kept_verbatim(shared_data):
    s = load_dataset_split("chebi20", "test", shared_data)
    assert s.records[0].smiles.count("\\\\") == 1  # the literal doubled backslash quirk of ChEBI-20
    molcap = load_dataset_split("pubchem324k-molcap", "test", shared_data)
    assert molcap.records[0].text.endswith("  ")  # trailing spaces survive


def _write(tmp_path: pathlib.Path, body: bytes, name="bad.txt") -> pathlib.Path:
    p = tmp_path / name
    p.write_bytes(b"CID\tSMILES\tdescription\n" + body)
    return p


BAD_ROWS = [
    (b"1\tCCO\n", "wrong column count", None, "expected 3"),
    (b"x1\tCCO\tethanol\n", "non-integer CID", "cid", "'x1' is not an integer"),
    (b"1\t \tethanol\n", "empty SMILES", "smiles", "SMILES is empty"),
    (b"1\tCCO\t\n", "empty text", "text", "description is empty"),
    (b"1\tCCO\tethanol\textra\n", "wrong column count", None, "got 4"),
]


@pytest.mark.parametrize("row,reason,field,msg", BAD_ROWS)
def test_strict_errors_name_file_line_field(tmp_path, row, reason, field, msg):
    p = _write(tmp_path, b"7\tC\tmethane\n" + row)
    with pytest.raises(DataFormatError) as e:
        load_split(p, strict=True)
    assert e.value.line == 3 and e.value.field == field and e.value.reason == reason
    assert str(e.value).startswith(f"{p}:3") and msg in str(e.value)
    if field:
        assert f"field '{field}'" in str(e.value)


def test_lenient_skips_and_counts_per_reason(tmp_path):
    p = _write(tmp_path, b"".join(r for r, *_ in BAD_ROWS) + b"7\tC\tmethane\n7\tCC\tethane\n")
    s = load_split(p)
    assert s.report.n_rows == 7 and len(s) == 2 and s.report.n_skipped == 5
    assert s.report.skipped == {"wrong column count": [2, 6], "non-integer CID": [3], "empty SMILES": [4],
                                "empty text": [5]}
    assert s.report.duplicate_cids == {7: [5, 6]}
    assert [r.row for r in s.records] == [5, 6]  # row indices of the file, not of the kept list


def test_bad_encoding_names_line(tmp_path):
    p = _write(tmp_path, b"1\tC\tmethane\n2\tCC\teth\xffane\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt:3: not valid UTF-8"):
        load_split(p)


def test_bad_header_empty_file_missing_file(tmp_path):
    (tmp_path / "h.txt").write_text("id\tsmiles\ttext\n1\tC\tm\n")
    with pytest.raises(DataFormatError, match=r"h\.txt:1: header"):
        load_split(tmp_path / "h.txt")
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(DataFormatError, match="file is empty"):
        load_split(tmp_path / "e.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_split(tmp_path / "nope.txt")


def test_crlf_and_lowercase_header(tmp_path):
    p = tmp_path / "w.txt"
    p.write_bytes(b"cid\tSMILES\tdescription\r\n1\tC\tmethane\r\n")
    s = load_split(p, strict=True)
    assert s.records[0].text == "methane" and s.records[0].cid == 1


def test_select_keeps_row_identity(chebi_slice):
    s = load_dataset_split("chebi20", "test", chebi_slice).select([5, 2])
    assert [r.row for r in s.records] == [5, 2] and len(s.cids) == 2
