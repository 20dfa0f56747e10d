"""Orbax checkpoints (args API): TrainState + RNG as arrays, the data-iterator position as JSON; async, keep-N.

Orbax keeps no checksums, so after each checkpoint commits process 0 writes `<step>/manifest.sha256` (the
`sha256sum` format: `sha256sum -c manifest.sha256` inside the step folder checks it by hand). A resume
verifies it first; a damaged or unrestorable checkpoint is renamed `<step>.damaged` (never deleted) and
the next older one is tried.
"""

import hashlib
import os
import pathlib
import re
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from icma_jax.training.state import TrainState

PyTree = Any
MANIFEST = "manifest.sha256"
_TMP_STEP = re.compile(r"^\d+\.orbax-checkpoint-tmp")  # a save cut short before Orbax renamed it into place


class CheckpointDamagedError(ValueError):
    """A checkpoint failed its sha256 manifest or could not be restored (message: one line)."""


def abstract_state(state_or_shapes: PyTree, sharding: PyTree) -> PyTree:
    """ShapeDtypeStructs carrying the target shardings: the restore target (from a state or `jax.eval_shape`)."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state_or_shapes, sharding)


def _key_parts(rng: jax.Array) -> tuple[jax.Array, str | None]:
    """(uint32 key data, impl name or None for a raw uint32 key)."""
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(rng), str(jax.random.key_impl(rng))
    return rng, None


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(step_dir: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(step_dir)) for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(step_dir: str | os.PathLike) -> None:
    """`<step_dir>/manifest.sha256`: one `digest  relative/path` line per file, written atomically."""
    step_dir = pathlib.Path(step_dir)
    lines = "".join(f"{_sha256(step_dir / name)}  {name}\n" for name in _files(step_dir))
    tmp = step_dir / f".{MANIFEST}.tmp"
    tmp.write_text(lines)
    os.replace(tmp, step_dir / MANIFEST)


def verify_manifest(step_dir: str | os.PathLike) -> str | None:
    """What is wrong with the checkpoint's files per its manifest (None: all match, or no manifest yet)."""
    step_dir = pathlib.Path(step_dir)
    manifest = step_dir / MANIFEST
    if not manifest.is_file():
        return None
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = step_dir / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} does not match its sha256"
    return None


def _primary() -> bool:
    return jax.process_index() == 0


def _agree(ok: bool) -> bool:
    """True when every process says ok (one process: its own answer)."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _quiet_closed_loop_callbacks() -> None:
    """After a failed restore, TensorStore's pending reads complete into Orbax's closed event loop and Python
    prints `RuntimeError: Event loop is closed` tracebacks; drop exactly those, keep every other report."""
    previous = sys.unraisablehook
    if getattr(previous, "_icma_quiet", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        if not (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"):
            previous(unraisable)

    hook._icma_quiet = True
    sys.unraisablehook = hook


def _print_primary(msg: str) -> None:
    if _primary():
        print(msg, flush=True)


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager`: `<directory>/<step>/{state,data,manifest.sha256}`."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = 3, async_save: bool = True,
                 log: Callable[[str], None] = _print_primary):
        self.directory = os.path.abspath(os.fspath(directory))
        self._log = log
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._unhashed: list[int] = []  # steps saved here whose manifest is not written yet

    def _step_dir(self, step: int) -> pathlib.Path:
        return pathlib.Path(self.directory) / str(step)

    def save(self, step: int, state: TrainState, rng: jax.Array, data: dict, force: bool = False) -> bool:
        """Start an async save of state, RNG and the JSON-able data position; returns whether it saved."""
        self.wait_until_finished()  # Orbax waits for the previous save anyway; its manifest is written here
        key_data, impl = _key_parts(rng)
        args = ocp.args.Composite(  # the key as NumPy: one copy, written by process 0, whatever its placement
            state=ocp.args.StandardSave({"train": state, "rng": np.asarray(key_data)}),
            data=ocp.args.JsonSave({"iterator": data, "rng_impl": impl}),
        )
        saved = self._manager.save(int(step), args=args, force=force)
        if saved:
            self._unhashed.append(int(step))
        return saved

    def restore(self, abstract: TrainState, step: int | None = None) -> tuple[TrainState, jax.Array, dict]:
        """Restore (state, rng, data) at `step` into the abstract sharded target.

        `step=None`: the newest checkpoint that passes its manifest and restores; damaged ones on the way are
        renamed `<step>.damaged` and named in one line. A damaged explicit `step` is a CheckpointDamagedError.
        """
        if step is not None:
            problem = self._check(step)
            if problem is not None:
                raise CheckpointDamagedError(f"checkpoint {self._step_dir(step)} is damaged: {problem}")
            return self._restore_or_raise(abstract, step)
        damaged = self._set_aside_cut_short()
        for candidate in sorted(self.all_steps(), reverse=True):
            problem = self._check(candidate)
            if problem is None:
                try:
                    restored = self._restore_or_raise(abstract, candidate)
                except CheckpointDamagedError as e:
                    problem = str(e)
            if problem is None:
                if damaged:
                    self._log(f"damaged checkpoint {'; '.join(damaged)}; resumed from step {candidate}")
                return restored
            damaged.append(f"step {candidate} ({problem}) moved to {self._move_aside(self._step_dir(candidate))}")
        if damaged:
            raise CheckpointDamagedError(f"no checkpoint in {self.directory} restores: {'; '.join(damaged)}; "
                                         "running again starts from step 0")
        raise FileNotFoundError(f"no checkpoint to restore in {self.directory}")

    def _check(self, step: int) -> str | None:
        """The manifest verdict, decided by process 0 and shared, so every process takes the same branch."""
        problem = verify_manifest(self._step_dir(step)) if _primary() else None
        return None if _agree(problem is None) else (problem or "its files do not match the manifest")

    def _restore_or_raise(self, abstract: TrainState, step: int) -> tuple[TrainState, jax.Array, dict]:
        try:
            meta = self._manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"]
            target = {"train": abstract, "rng": self._rng_target(abstract, meta["rng_impl"])}
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore())
            )
            ok, error = True, ""
        except Exception as e:  # Orbax / TensorStore errors are many and long: keep the first line
            ok, error = False, f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
            _quiet_closed_loop_callbacks()
        if not _agree(ok):
            raise CheckpointDamagedError(f"restoring step {step} failed ({error or 'on another process'})")
        rng = restored["state"]["rng"]
        if meta["rng_impl"] is not None:
            rng = jax.random.wrap_key_data(rng, impl=meta["rng_impl"])
        return restored["state"]["train"], rng, restored["data"]["iterator"]

    def _move_aside(self, path: pathlib.Path) -> str:
        """Rename `path` to `<name>.damaged` (numbered when taken) on process 0; returns the new name."""
        target, n = path.with_name(f"{path.name}.damaged"), 1
        while target.exists():
            target, n = path.with_name(f"{path.name}.damaged{n}"), n + 1
        if _primary():
            path.rename(target)
        _sync(f"icma_checkpoint_aside_{path.name}")
        self._manager.reload()
        return target.name

    def _set_aside_cut_short(self) -> list[str]:
        """Leftover temporary folders of saves cut short by a crash: moved aside and named."""
        leftovers = sorted(p for p in pathlib.Path(self.directory).iterdir() if _TMP_STEP.match(p.name) and p.is_dir())
        return [f"step {p.name.split('.')[0]} (cut short while saving) moved to {self._move_aside(p)}"
                for p in leftovers]

    def _rng_target(self, abstract: TrainState, impl: str | None) -> jax.ShapeDtypeStruct:
        shape = jax.random.key_data(jax.random.key(0, impl=impl)).shape if impl else (2,)
        step_sharding = getattr(abstract.step, "sharding", None)
        if isinstance(step_sharding, jax.sharding.NamedSharding):
            step_sharding = jax.sharding.NamedSharding(step_sharding.mesh, jax.sharding.PartitionSpec())
        return jax.ShapeDtypeStruct(shape, jnp.uint32, sharding=step_sharding)

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the checkpoints kept on disk."""
        return list(self._manager.all_steps())

    def wait_until_finished(self) -> None:
        """Block until pending async saves are on disk and their manifests written (call before exit)."""
        self._manager.wait_until_finished()
        if _primary():
            for step in self._unhashed:
                if self._step_dir(step).is_dir():  # not yet removed by keep-N
                    write_manifest(self._step_dir(step))
        self._unhashed.clear()

    def close(self) -> None:
        """Finish pending saves, write their manifests and release the manager."""
        self.wait_until_finished()
        self._manager.close()
