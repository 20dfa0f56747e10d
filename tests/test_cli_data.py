"""`icma-jax data stats` and `download` through the real console entry point."""

import subprocess
import sys

from icma_jax.cli import main


def test_data_stats(shared_data, capsys):
    assert main(["data", "stats", "--dataset", "pubchem324k-iupac", "--split", "train",
                 "--data-dir", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert "11856 read, 11856 kept" in out and "duplicate CIDs  2" in out and "invalid SMILES  0" in out
    assert "p50=" in out


def test_data_stats_counts_invalid_smiles_and_skips(tmp_path, capsys):
    p = tmp_path / "x.txt"
    p.write_text("CID\tSMILES\tdescription\n1\tCCO\tethanol\n2\tC1CC\tbroken ring\n3\tCC\t\n")
    assert main(["data", "stats", "--file", str(p)]) == 0
    out = capsys.readouterr().out
    assert "3 read, 2 kept, 1 skipped (empty text)" in out and "invalid SMILES  1 (lines 3)" in out
    assert main(["data", "stats", "--file", str(p), "--strict"]) == 2
    assert f"{p}:4 field 'text': description is empty" in capsys.readouterr().err


def test_console_script_missing_data_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "icma_jax.cli", "data", "stats", "--dataset", "chebi20",
                        "--split", "train", "--data-dir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "icma-jax download chebi20" in r.stderr
