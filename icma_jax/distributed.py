"""The multi-process launch contract: when and how `jax.distributed.initialize` runs.

Every process runs the same command. Explicit settings win: `JAX_COORDINATOR_ADDRESS` (host:port of
process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, all three or none. Otherwise JAX's own cluster
detection runs, but only when a multi-process cluster is visible (SLURM with several tasks, Open MPI with
several ranks, a TPU pod slice with several workers); a lone process initialises nothing.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections.abc import Mapping

import jax

DEFAULT_HEARTBEAT_TIMEOUT_S = 100  # JAX's own default: a process silent this long is declared lost
ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


@dataclasses.dataclass(frozen=True)
class LaunchSettings:
    """How this process joins the job: explicit (all fields set) or JAX's detection of `cluster`."""

    cluster: str  # "env" (the JAX_* variables), "slurm", "openmpi", "tpu"
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def _int_var(env: Mapping[str, str], name: str, low: int) -> int:
    value = env[name].strip()
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None
    if number < low:
        raise ValueError(f"{name}={number} must be >= {low}")
    return number


def _explicit(env: Mapping[str, str]) -> LaunchSettings | None:
    present = [name for name in ENV_VARS if env.get(name, "").strip()]
    if not present:
        return None
    missing = [name for name in ENV_VARS if name not in present]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set although {', '.join(present)} is: a multi-process launch "
                         f"needs all of {', '.join(ENV_VARS)}")
    address = env["JAX_COORDINATOR_ADDRESS"].strip()
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"JAX_COORDINATOR_ADDRESS={address!r} is not host:port (e.g. 10.0.0.1:1234)")
    n = _int_var(env, "JAX_NUM_PROCESSES", 1)
    i = _int_var(env, "JAX_PROCESS_ID", 0)
    if i >= n:
        raise ValueError(f"JAX_PROCESS_ID={i} must be below JAX_NUM_PROCESSES={n}")
    return LaunchSettings("env", address, n, i)


def _count(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env.get(name, "1"))
    except ValueError:
        return 1


def _detected_cluster(env: Mapping[str, str]) -> str | None:
    """The multi-process cluster JAX can detect here, or None (one process, or a single-task allocation)."""
    if "SLURM_JOB_ID" in env and _count(env, "SLURM_NTASKS") > 1:
        return "slurm"
    if "OMPI_MCA_orte_hnp_uri" in env and _count(env, "OMPI_COMM_WORLD_SIZE") > 1:
        return "openmpi"
    if "," in env.get("TPU_WORKER_HOSTNAMES", "") or "MEGASCALE_COORDINATOR_ADDRESS" in env:
        return "tpu"
    return None


def launch_settings(env: Mapping[str, str] | None = None) -> LaunchSettings | None:
    """This process's settings from the environment, None when it runs alone; a bad value is a ValueError."""
    env = os.environ if env is None else env
    explicit = _explicit(env)
    if explicit is not None:
        return explicit if explicit.num_processes > 1 else None
    cluster = _detected_cluster(env)
    return LaunchSettings(cluster) if cluster else None


def initialize(heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S, env: Mapping[str, str] | None = None) -> bool:
    """Join the multi-process job when launched as one (see the module docstring); returns whether it did.

    Must run before anything touches a JAX device. A process silent for `heartbeat_timeout_s` is declared
    lost and every survivor stops with a message naming it.
    """
    if jax.distributed.is_initialized():
        return True
    settings = launch_settings(env)
    if settings is None:
        return False
    if heartbeat_timeout_s < 1:
        raise ValueError(f"heartbeat timeout must be >= 1 s, got {heartbeat_timeout_s}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process collectives on CPU
    jax.distributed.initialize(
        coordinator_address=settings.coordinator_address,
        num_processes=settings.num_processes,
        process_id=settings.process_id,
        heartbeat_timeout_seconds=int(heartbeat_timeout_s),
    )
    return True


class StopRequest:
    """SIGTERM (preemption, SLURM requeue) as a flag the step loop polls; all processes agree on the step."""

    def __init__(self) -> None:
        self._signalled = False
        self._previous = None
        self._multi = jax.process_count() > 1
        # several processes: JAX's preemption service owns SIGTERM; signal handlers need the main thread
        if not self._multi and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._signalled = True

    def reached(self, step: int) -> bool:
        """True at the step where every process should save and stop (call once per step, on every process)."""
        if self._multi:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self._signalled

    def close(self) -> None:
        """Restore the previous SIGTERM handler."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def digest(arrays) -> bytes:
    """sha256 over a sequence of NumPy arrays (shape, dtype and bytes of each)."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.digest()


def check_same_everywhere(what: str, value: bytes) -> None:
    """Fail loudly, naming the processes, when `value` (e.g. a digest of the prompts) differs between processes."""
    if jax.process_count() == 1:
        return
    import numpy as np
    from jax.experimental import multihost_utils

    mine = np.frombuffer(value, np.uint8)
    every = np.asarray(multihost_utils.process_allgather(mine))  # [processes, len]
    differ = [i for i in range(every.shape[0]) if not np.array_equal(every[i], every[0])]
    if differ:
        raise ValueError(f"{what} differ between processes: processes {differ} disagree with process 0 (same "
                           "code, data files, config and library versions on every host?)")


def split_across_processes(sharding: jax.sharding.Sharding, shape: tuple[int, ...]) -> bool:
    """Whether processes hold different pieces of an array of `shape` (not only replicas of the same ones)."""
    pieces: dict[int, set] = {}
    for device, index in sharding.devices_indices_map(tuple(shape)).items():
        pieces.setdefault(device.process_index, set()).add(tuple((s.start, s.stop) for s in index))
    return len({frozenset(p) for p in pieces.values()}) > 1
