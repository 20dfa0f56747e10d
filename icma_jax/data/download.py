"""Checksummed, atomic download of the public dataset files into a data root."""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import urllib.error
import urllib.request

from icma_jax.data.records import load_split
from icma_jax.data.sources import DATASETS, ENV_PUBCHEM_URL, DataFile, resolve_data_dir

GROUPS = {"chebi20": ("chebi20",), "pubchem324k": ("pubchem324k-iupac", "pubchem324k-molcap")}


def sha256_of(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _url_for(f: DataFile) -> str | None:
    if f.url:
        return f.url
    base = os.environ.get(ENV_PUBCHEM_URL)
    return f"{base.rstrip('/')}/{f.relpath.split('/', 1)[1]}" if base else None


def verify(path: pathlib.Path, f: DataFile) -> str:
    """Checks a file against its pinned hash, or its row count when no hash is pinned; returns the hash."""
    digest = sha256_of(path)
    if f.sha256 is not None and digest != f.sha256:
        raise RuntimeError(f"{path}: sha256 {digest} does not match the expected {f.sha256}")
    if f.sha256 is None:
        n = load_split(path).report.n_rows
        if n != f.n_rows:
            raise RuntimeError(f"{path}: {n} rows, expected {f.n_rows} ({f.unpinned_reason})")
    return digest


def _fetch(url: str, dest: pathlib.Path, f: DataFile, timeout: float) -> str:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        digest = verify(pathlib.Path(tmp), f)
        os.replace(tmp, dest)  # atomic: a reader sees the old file or the whole new one
        return digest
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
        for split, f in DATASETS[name].files.items():
            path = root / f.relpath
            if path.is_file():
                try:
                    verify(path, f)
                    log(f"ok       {path}")
                    done.append(path)
                    continue
                except RuntimeError as e:
                    log(f"invalid  {e}; fetching again")
            url = _url_for(f)
            if url is None:
                missing.append((path, f"no public URL for this file; set ${ENV_PUBCHEM_URL} to a mirror"))
                continue
            try:
                digest = _fetch(url, path, f, timeout)
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                missing.append((path, f"{url}: {getattr(e, 'reason', e)}"))
                continue
            note = "" if f.sha256 else f" (unpinned; sha256 {digest})"
            log(f"fetched  {path}{note}")
            done.append(path)
    if missing:
        lines = "\n".join(f"  {p}  <- {why}" for p, why in missing)
        raise RuntimeError(f"could not fetch {len(missing)} file(s); place them by hand:\n{lines}")
    return done
