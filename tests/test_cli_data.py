"""`icma-jax data stats` and `download` through the real console entry point."""

import os
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


def test_download_cli_fetches_from_file_urls_and_verifies(monkeypatch, shared_data, tmp_path, capsys):
    from icma_jax.data import sources

    ds = sources.DATASETS["chebi20"]
    local = {k: sources.DataFile(f.relpath, (shared_data / f.relpath).as_uri(), f.git_blob, f.n_rows, f.sha256)
             for k, f in ds.files.items() if k != "train"}
    monkeypatch.setitem(sources.DATASETS, "chebi20", sources.Dataset(ds.name, ds.subdir, local, ds.license, ds.source))
    assert main(["download", "chebi20", "--dest", str(tmp_path / "root")]) == 0
    out = capsys.readouterr().out
    assert out.count("fetched ") == 2 and f"2 file(s) ready under {tmp_path / 'root'}" in out
    for f in local.values():
        assert (tmp_path / "root" / f.relpath).read_bytes() == (shared_data / f.relpath).read_bytes()
    assert main(["download", "chebi20", "--dest", str(tmp_path / "root")]) == 0  # present and valid: kept
    assert capsys.readouterr().out.count("ok ") == 2


def test_download_console_script_names_what_the_mirror_lacks(shared_data, tmp_path):
    """The real entry point, PubChem324k from a file:// mirror that has every file but molcap/train.txt."""
    env = {**os.environ, "ICMA_PUBCHEM324K_URL": (shared_data / "pubchem324k").as_uri()}
    r = subprocess.run([sys.executable, "-m", "icma_jax.cli", "download", "pubchem324k", "--dest", str(tmp_path)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "could not fetch 1 file(s)" in r.stderr and "molcap/train.txt" in r.stderr, r.stderr
    iupac = "pubchem324k/iupac/train.txt"
    assert (tmp_path / iupac).read_bytes() == (shared_data / iupac).read_bytes()
