"""Checksummed, atomic download of the public dataset files into a data root."""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import urllib.error
import urllib.request

from icma_jax.data.sources import DATASETS, ENV_PUBCHEM_URL, DataFile, resolve_data_dir

GROUPS = {"chebi20": ("chebi20",), "pubchem324k": ("pubchem324k-iupac", "pubchem324k-molcap")}


def file_hashes(path: pathlib.Path) -> tuple[str, str]:
    """`(git blob id, sha256)` of a file, in one read."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(), hashlib.sha256(data).hexdigest()


def url_for(f: DataFile) -> str:
    """The commit-pinned URL, or the PubChem324k mirror in $ICMA_PUBCHEM324K_URL when set."""
    base = os.environ.get(ENV_PUBCHEM_URL)
    if base and f.relpath.startswith("pubchem324k/"):
        return f"{base.rstrip('/')}/{f.relpath.split('/', 1)[1]}"
    return f.url


def verify(path: pathlib.Path, f: DataFile) -> str:
    """Checks a file against its pinned git blob id (and sha256 where known); returns the blob id."""
    blob, sha256 = file_hashes(path)
    if blob != f.git_blob:
        raise RuntimeError(f"{path}: git blob id {blob} does not match the pinned {f.git_blob}")
    if f.sha256 is not None and sha256 != f.sha256:
        raise RuntimeError(f"{path}: sha256 {sha256} does not match the pinned {f.sha256}")
    return blob


def _fetch(url: str, dest: pathlib.Path, f: DataFile, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        verify(pathlib.Path(tmp), f)
        os.replace(tmp, dest)  # atomic: a reader sees the old file or the whole new one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download(group: str, dest: str | os.PathLike | None = None, *, timeout: float = 20.0,
             log=print) -> list[pathlib.Path]:
    """Fetches every split of `group` (chebi20 | pubchem324k) not already present and valid."""
    if group not in GROUPS:
        raise ValueError(f"unknown dataset {group!r}; choose one of {', '.join(GROUPS)}")
    root = resolve_data_dir(dest)
    done, missing = [], []
    for name in GROUPS[group]:
        for f in DATASETS[name].files.values():
            path = root / f.relpath
            if path.is_file():
                try:
                    verify(path, f)
                    log(f"ok       {path}")
                    done.append(path)
                    continue
                except RuntimeError as e:
                    log(f"invalid  {e}; fetching again")
            url = url_for(f)
            try:
                _fetch(url, path, f, timeout)
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                missing.append((path, f"{url}: {getattr(e, 'reason', e)}"))
                continue
            log(f"fetched  {path}")
            done.append(path)
    if missing:
        lines = "\n".join(f"  {p}  <- {why}" for p, why in missing)
        raise RuntimeError(f"could not fetch {len(missing)} file(s); place them by hand:\n{lines}")
    return done
