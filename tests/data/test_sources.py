"""Dataset table: checksums match the shared files; lookup order; download is atomic and fails fast."""

import pathlib

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
                assert f.sha256 is not None, f"{f.relpath} is on disk but has no pinned checksum"
                assert dl.sha256_of(path) == f.sha256, f.relpath
                checked += 1
            else:
                assert f.relpath.endswith("train.txt"), f"{f.relpath} missing from shared data"
    assert checked == 7


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
    patched = {k: sources.DataFile(f.relpath, files.get(k, (shared_data / f.relpath).as_uri()), f.sha256,
                                   f.n_rows, f.unpinned_reason) for k, f in ds.files.items() if k != "train"}
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


def test_pubchem_without_mirror_names_the_env_var(monkeypatch, tmp_path):
    monkeypatch.delenv(sources.ENV_PUBCHEM_URL, raising=False)
    with pytest.raises(RuntimeError, match=sources.ENV_PUBCHEM_URL):
        dl.download("pubchem324k", tmp_path, log=lambda *_: None)
