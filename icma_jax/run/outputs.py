"""Run files are written once, by process 0, atomically: a reader (or a resumed run) sees the old file or the
new one, never half of one. Orbax checkpoints are the exception: every process writes its own shards."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator

import jax


def is_writer() -> bool:
    """Whether this process writes the run's files (process 0 of the job)."""
    return jax.process_index() == 0


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A temporary sibling of `path` to write; renamed onto `path` when the block ends without error."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
