"""Dataset table: every file pinned (commit URL, git blob id); lookup order; download is atomic and fails fast."""

import pathlib
import re
import subprocess

import pytest

from icma_jax.data import download as dl
from icma_jax.data import sources
from icma_jax.data.sources import DATASETS, resolve_data_dir, split_path


def test_checksum_table_matches_shared_files(shared_data):
    checked = 0
    for ds in DATASETS.values():
        for f in ds.files.values():
            path = shared_data / f.relpath
            if path.is_file():
                assert f.sha256 is not None, f"{f.relpath} is on disk but has no pinned sha256"
                assert dl.file_hashes(path) == (f.git_blob, f.sha256), f.relpath
                checked += 1
            else:
                assert f.relpath.endswith("train.txt"), f"{f.relpath} missing from shared data"
    assert checked == 7


def test_every_file_is_pinned_to_a_commit():
    for ds in DATASETS.values():
        for f in ds.files.values():
            assert re.fullmatch(r"[0-9a-f]{40}", f.git_blob), f.relpath
            commit = re.search(r"/(blender-nlp/MolT5|phenixace/ICMA)/([0-9a-f]{40})/", f.url)
            assert commit, f"{f.relpath}: {f.url} is not pinned to a commit"
    assert DATASETS["pubchem324k-iupac"].files["train"].url.endswith(
        "/974adf3cd9487c6ee4768c4d6317e11ab499e11d/data/PubChem324k/iupac/raw/train.txt")


def test_git_blob_id_equals_git_hash_object(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_bytes(b"CID\tSMILES\tdescription\n1\tC\tmethane\n")
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert dl.file_hashes(path)[0] == expected.stdout.strip()


def test_lookup_order(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(sources.ENV_DATA_DIR, raising=False)
    assert resolve_data_dir() == tmp_path / "cache" / "icma_jax" / "data"
    monkeypatch.setenv(sources.ENV_DATA_DIR, str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_missing_split_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="icma-jax download chebi20"):
        split_path("chebi20", "train", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        split_path("chebi21", "test", tmp_path)


def _mirror(monkeypatch, shared_data: pathlib.Path, files: dict) -> None:
    """Point the chebi20 entries at file:// URLs of a local copy (urllib reads file:// like http)."""
    ds = DATASETS["chebi20"]
    patched = {k: sources.DataFile(f.relpath, files.get(k, (shared_data / f.relpath).as_uri()), f.git_blob,
                                   f.n_rows, f.sha256) for k, f in ds.files.items() if k != "train"}
    monkeypatch.setitem(DATASETS, "chebi20", sources.Dataset(ds.name, ds.subdir, patched, ds.license, ds.source))


def test_download_verifies_and_is_idempotent(monkeypatch, shared_data, tmp_path):
    _mirror(monkeypatch, shared_data, {})
    got = dl.download("chebi20", tmp_path, log=lambda *_: None)
    assert sorted(p.name for p in got) == ["test.txt", "validation.txt"]
    assert not list(tmp_path.rglob("*.part"))
    logs = []
    dl.download("chebi20", tmp_path, log=logs.append)
    assert all(line.startswith("ok") for line in logs)


def test_download_rejects_bad_checksum_without_leaving_a_file(monkeypatch, shared_data, tmp_path):
    bad = tmp_path / "corrupt.txt"
    bad.write_bytes((shared_data / "chebi20/test.txt").read_bytes()[:-10])
    _mirror(monkeypatch, shared_data, {"test": bad.as_uri()})
    with pytest.raises(RuntimeError, match="does not match"):
        dl.download("chebi20", tmp_path / "root", log=lambda *_: None)
    assert not (tmp_path / "root/chebi20/test.txt").exists()
    assert not list((tmp_path / "root").rglob("*.part"))


def test_download_without_network_fails_fast_naming_files(monkeypatch, shared_data, tmp_path):
    _mirror(monkeypatch, shared_data, {"test": "http://127.0.0.1:9/test.txt"})  # port 9: refused at once
    with pytest.raises(RuntimeError) as e:
        dl.download("chebi20", tmp_path, timeout=2, log=lambda *_: None)
    assert "place them by hand" in str(e.value) and str(tmp_path / "chebi20/test.txt") in str(e.value)


def test_pubchem_mirror_overrides_the_pinned_url_and_is_checked(monkeypatch, shared_data, tmp_path):
    f = DATASETS["pubchem324k-molcap"].files["test"]
    monkeypatch.delenv(sources.ENV_PUBCHEM_URL, raising=False)
    assert dl.url_for(f) == f.url
    monkeypatch.setenv(sources.ENV_PUBCHEM_URL, (shared_data / "pubchem324k").as_uri())
    assert dl.url_for(f) == (shared_data / "pubchem324k/molcap/test.txt").as_uri()
    with pytest.raises(RuntimeError) as e:  # the mirror (shared data) lacks molcap/train.txt only
        dl.download("pubchem324k", tmp_path, log=lambda *_: None)
    assert "could not fetch 1 file(s)" in str(e.value) and "molcap/train.txt" in str(e.value)
    assert dl.file_hashes(tmp_path / "pubchem324k/iupac/train.txt")[0] == "bdd40247ea8f9709ac4acd1238f589305982e655"
