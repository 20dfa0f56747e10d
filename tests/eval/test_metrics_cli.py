"""`icma-jax evaluate`: the printed table, the JSON file, and user errors (exit 2, file and line)."""

import json
import pathlib

from metrics_support import chebi, write_neighbour_files  # noqa: F401  (fixture)

from icma_jax.cli import main
from icma_jax.eval.metrics import CAP2MOL_KEYS, MOL2CAP_KEYS


def test_evaluate_both_tasks_prints_table_and_writes_json(chebi, tmp_path: pathlib.Path, capsys):
    m2c, c2m = write_neighbour_files(chebi, tmp_path, range(12), empty_every=5)
    assert main(["evaluate", str(m2c), "--json", str(tmp_path / "out" / "m2c.json")]) == 0
    table = capsys.readouterr().out
    assert "task       mol2cap" in table and "rows       12 (all rows count; 2 empty predictions)" in table
    assert "tokenizer  scibert" in table and "METEOR" in table and "BLEU-4" in table
    m = json.loads((tmp_path / "out" / "m2c.json").read_text())
    assert set(MOL2CAP_KEYS) <= set(m) and m["n"] == 12 and m["tokenizer"].startswith("scibert")

    assert main(["evaluate", str(c2m), "--no-fcd", "--json", str(tmp_path / "c2m.json")]) == 0
    table = capsys.readouterr().out
    assert "task       cap2mol" in table and "invalid    " in table
    assert "not computed" in table.split("FCD (lower is better)")[1]
    c = json.loads((tmp_path / "c2m.json").read_text())
    assert set(CAP2MOL_KEYS) <= set(c) and c["fcd"] is None and "disabled" in c["fcd_note"]
    assert c["n"] == 12 and c["n_invalid"] >= c["n_empty"] == 2 and c["tokenizer"] == "characters"


def test_bad_file_exits_2_naming_file_and_line(tmp_path: pathlib.Path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("SMILES\tground truth\toutput\nCCO\ta caption\n", encoding="utf-8")
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: 2 tab-separated fields, expected 3" in err
    assert main(["evaluate", str(tmp_path / "missing.tsv")]) == 2
    assert "missing.tsv: prediction file not found" in capsys.readouterr().err
