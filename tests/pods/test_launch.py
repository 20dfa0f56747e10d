"""`icma-jax launch`: N processes of one JAX job, prefixed output, first failure wins, signals forwarded."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from icma_jax.cli import launch

PSUM = textwrap.dedent("""
    import os, jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from icma_jax import distributed
    assert distributed.initialize(heartbeat_timeout_s=10)
    mesh = Mesh(np.array(jax.devices()), ("d",))
    rows = np.full((jax.local_device_count(),), jax.process_index() + 1, np.float32)
    x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("d")), rows)
    total = jax.jit(lambda x: x.sum(), out_shardings=NamedSharding(mesh, P()))(x)
    print(f"process {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} local of "
          f"{jax.device_count()} devices, sum {float(total):g}")
""")


def _launch(tmp_path, script: str, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    path = tmp_path / "worker.py"
    path.write_text(script)
    cmd = [sys.executable, "-m", "icma_jax.cli", "launch", *flags, "--", sys.executable, str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_two_processes_form_one_job(tmp_path):
    out = _launch(tmp_path, PSUM, "--processes", "2", "--devices-per-process", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    # 3 devices of process 0 hold 1, 3 of process 1 hold 2: the sum crosses processes
    assert "[0] process 0 of 2: 3 local of 6 devices, sum 9" in lines, out.stdout
    assert "[1] process 1 of 2: 3 local of 6 devices, sum 9" in lines, out.stdout


FAIL_ONE = textwrap.dedent("""
    import os, sys, time
    i = int(os.environ["JAX_PROCESS_ID"])
    print("address", os.environ["JAX_COORDINATOR_ADDRESS"], "of", os.environ["JAX_NUM_PROCESSES"], flush=True)
    if i == 1:
        time.sleep(0.5)
        sys.exit(3)
    time.sleep(60)
""")


def test_first_failure_stops_the_others_and_is_returned(tmp_path):
    t0 = time.monotonic()
    out = _launch(tmp_path, FAIL_ONE, "--processes", "3", "--port", "45123", "--grace-s", "5")
    assert out.returncode == 3
    assert time.monotonic() - t0 < 30  # processes 0 and 2 were stopped, not waited for
    assert "icma-jax launch: process 1 exited with code 3; stopping the others" in out.stderr
    assert [ln for ln in out.stdout.splitlines() if ln.startswith("[2] ")] == ["[2] address 127.0.0.1:45123 of 3"]


def test_killed_process_is_named():
    assert launch.describe_exit(-9) == "was killed by SIGKILL"
    assert launch.describe_exit(2) == "exited with code 2"


SIGTERM_AWARE = textwrap.dedent("""
    import os, signal, sys, time
    def stop(signum, frame):
        print("SIGTERM: saving", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    time.sleep(60)
""")


def test_sigterm_is_forwarded_to_every_process(tmp_path):
    path = tmp_path / "worker.py"
    path.write_text(SIGTERM_AWARE)
    proc = subprocess.Popen([sys.executable, "-m", "icma_jax.cli", "launch", "--processes", "2", "--", sys.executable,
                             str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = []
    while len(ready) < 2:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        ready += [line] if line.endswith("ready\n") else []
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert sorted(ln for ln in stdout.splitlines() if "SIGTERM" in ln) == ["[0] SIGTERM: saving", "[1] SIGTERM: saving"]
    assert "SIGTERM: sending SIGTERM to every process" in stderr


def test_process_env_replaces_the_device_count():
    env = launch.process_env({"XLA_FLAGS": "--xla_foo=1 --xla_force_host_platform_device_count=8"}, 1, 2, 999, 4)
    assert env["XLA_FLAGS"] == "--xla_foo=1 --xla_force_host_platform_device_count=4"
    got = (env["JAX_COORDINATOR_ADDRESS"], env["JAX_NUM_PROCESSES"], env["JAX_PROCESS_ID"])
    assert got == ("127.0.0.1:999", "2", "1")


@pytest.mark.parametrize("flags, msg", [(["--processes", "0"], "--processes must be >= 1"),
                                        (["--processes", "2"], "no command")])
def test_bad_arguments_are_one_line(flags, msg):
    out = subprocess.run([sys.executable, "-m", "icma_jax.cli", "launch", *flags], capture_output=True, text=True,
                         env=dict(os.environ))
    assert out.returncode == 2 and msg in out.stderr
