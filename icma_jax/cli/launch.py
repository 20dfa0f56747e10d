"""`icma-jax launch --processes N [--devices-per-process M] [--port P] -- COMMAND ...`: a pod on one machine.

Starts N copies of COMMAND, each told its place in the job by `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`
and `JAX_PROCESS_ID` (see `icma_jax.distributed`), with M fake CPU devices each when M is given. Every
output line is prefixed with its process index. The first process to fail stops the others and its exit
code is returned; Ctrl-C or SIGTERM sends SIGTERM to every process (train.py saves a checkpoint and
stops), then SIGKILL after the grace period.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

POLL_S = 0.1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("launch", help="run COMMAND as N processes of one JAX job on this machine",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, required=True, help="number of processes N")
    p.add_argument("--devices-per-process", type=int, default=None,
                   help="fake CPU devices per process (XLA_FLAGS=--xla_force_host_platform_device_count=M)")
    p.add_argument("--port", type=int, default=None, help="coordinator port on 127.0.0.1 (default: a free one)")
    p.add_argument("--grace-s", type=float, default=30.0,
                   help="seconds between SIGTERM and SIGKILL when stopping the processes")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ... (run by every process)")
    p.set_defaults(func=run)


def free_port() -> int:
    """A TCP port nobody listens on right now (the coordinator binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(base: dict[str, str], index: int, n: int, port: int, devices: int | None) -> dict[str, str]:
    """The environment of process `index`: the launch contract plus, with `devices`, that many CPU devices."""
    env = dict(base, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(n),
               JAX_PROCESS_ID=str(index), PYTHONUNBUFFERED="1")
    if devices is not None:
        flags = [f for f in env.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_force_host_platform_device_count")]
        env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    return env


def _pump(index: int, stream, lock: threading.Lock) -> None:
    """Copy one process's output to ours, each line prefixed with `[index] `."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        with lock:
            sys.stdout.write(f"[{index}] {line}\n")
            sys.stdout.flush()
    stream.close()


def describe_exit(code: int) -> str:
    """'exited with code 3' or 'was killed by SIGKILL' (Popen reports a signal as a negative code)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Job:
    """N child processes, their output pumps, and how to stop them."""

    def __init__(self, command: list[str], n: int, port: int, devices: int | None):
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen] = []
        self.pumps: list[threading.Thread] = []
        for i in range(n):
            proc = subprocess.Popen(command, env=process_env(dict(os.environ), i, n, port, devices),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            pump = threading.Thread(target=_pump, args=(i, proc.stdout, self.lock), daemon=True)
            pump.start()
            self.procs.append(proc)
            self.pumps.append(pump)

    def say(self, msg: str) -> None:
        with self.lock:
            print(f"icma-jax launch: {msg}", file=sys.stderr, flush=True)

    def signal_all(self, signum: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def stop(self, grace_s: float) -> None:
        """SIGTERM to the running processes, SIGKILL to those still running after `grace_s`."""
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if any(p.poll() is None for p in self.procs):
            self.say(f"processes {[i for i, p in enumerate(self.procs) if p.poll() is None]} still running after "
                     f"{grace_s:g} s: SIGKILL")
            self.signal_all(signal.SIGKILL)
        for p in self.procs:
            p.wait()
        for t in self.pumps:
            t.join(timeout=5)

    def first_failure(self) -> tuple[int, int] | None:
        """(index, code) of a process that ended with a non-zero code, the earliest seen."""
        for i, p in enumerate(self.procs):
            code = p.poll()
            if code not in (None, 0):
                return i, code
        return None


def launch(command: list[str], n: int, devices: int | None = None, port: int | None = None,
           grace_s: float = 30.0) -> int:
    """Run the job; 0 when every process succeeded, else the first failing process's exit code."""
    if n < 1:
        raise ValueError(f"--processes must be >= 1, got {n}")
    if devices is not None and devices < 1:
        raise ValueError(f"--devices-per-process must be >= 1, got {devices}")
    if not command:
        raise ValueError("no command: icma-jax launch --processes N -- COMMAND ...")
    job = Job(command, n, port or free_port(), devices)
    interrupted: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _: interrupted.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            failed = job.first_failure()
            if failed is not None:
                index, code = failed
                job.say(f"process {index} {describe_exit(code)}; stopping the others")
                job.stop(grace_s)
                return code if code > 0 else 128 - code
            if interrupted:
                job.say(f"{signal.Signals(interrupted[0]).name}: sending SIGTERM to every process")
                job.stop(grace_s)
                return 128 + interrupted[0]
            if all(p.poll() == 0 for p in job.procs):
                for t in job.pumps:
                    t.join(timeout=5)
                return 0
            time.sleep(POLL_S)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if any(p.poll() is None for p in job.procs):  # e.g. an exception above: never leave orphans
            job.signal_all(signal.SIGKILL)


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return launch(command, args.processes, args.devices_per_process, args.port, args.grace_s)
