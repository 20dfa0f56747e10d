"""Several processes train, evaluate, checkpoint and resume like one: the real train.py under `icma-jax launch`.

2 processes x 4 CPU devices against 1 process x 8 devices with the same flags (the tiny config): per-step
losses within 1e-5 (relative), byte-identical predictions, equal metrics, every global batch row fed once.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from icma_jax.cli import launch

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--config", "configs/tiny.py:steps=6", "--config.mesh.heartbeat_timeout_s=10"]
FULL_PADDED = ["--config.mesh.data=4", "--config.mesh.fsdp=2"]
LORA_PACKED_ACCUM = ["--config.model.finetune=lora", "--config.mesh.data=1", "--config.mesh.fsdp=8",
                     "--config.prompt.cutoff_len=384", "--config.train.buckets=(384,)",
                     "--config.train.pack_length=768", "--config.train.batch_size=16", "--config.train.grad_accum=2",
                     "--config.data.train_limit=40"]
pytestmark = pytest.mark.slow


def _env(shared_data, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") or k == "JAX_PLATFORMS"}
    return {**env, "ICMA_DATA_DIR": str(shared_data), "JAX_PLATFORMS": "cpu", **extra}


def _train_cmd(workdir, flags) -> list[str]:
    return [sys.executable, "train.py", *TINY, "--workdir", str(workdir), *flags]


def _one_process(workdir, flags, shared_data, **extra) -> subprocess.CompletedProcess:
    env = _env(shared_data, XLA_FLAGS="--xla_force_host_platform_device_count=8", **extra)
    return subprocess.run(_train_cmd(workdir, flags), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _launch_cmd(workdir, flags) -> list[str]:
    return [sys.executable, "-m", "icma_jax.cli", "launch", "--processes", "2", "--devices-per-process", "4",
            "--grace-s", "60", "--", *_train_cmd(workdir, flags)]


def _two_processes(workdir, flags, shared_data, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(_launch_cmd(workdir, flags), cwd=REPO, env=_env(shared_data, **extra),
                          capture_output=True, text=True, timeout=600)


def _ok(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return out.stdout + out.stderr


def _losses(workdir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (pathlib.Path(workdir) / "metrics.jsonl").open())}


def _assert_same_run(one, two, steps=6):
    a, b = _losses(one), _losses(two)
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
    assert worst <= 1e-5, (a, b)
    assert (one / "predictions_test.tsv").read_bytes() == (two / "predictions_test.tsv").read_bytes()
    metrics = [json.loads((d / "eval_test.json").read_text())["metrics"] for d in (one, two)]
    assert metrics[0] == metrics[1]
    return worst


def _assert_rows_fed_once(trace: pathlib.Path, batch_rows: int, steps: int = 6):
    fed = [{r["step"]: r["rows"] for r in map(json.loads, trace.with_name(f"{trace.name}.{i}").open())}
           for i in (0, 1)]
    assert sorted(fed[0]) == sorted(fed[1]) == list(range(1, steps + 1))
    for step in fed[0]:
        both = fed[0][step] + fed[1][step]
        assert sorted(both) == list(range(batch_rows)), (step, fed[0][step], fed[1][step])
        assert fed[0][step] and fed[1][step]


@pytest.mark.parametrize("flags, batch_rows, split", [(LORA_PACKED_ACCUM, 16, True), (FULL_PADDED, 8, False)],
                         ids=["lora-packed-accum-fsdp8", "full-padded-data4-fsdp2"])
def test_two_processes_equal_one(tmp_path, shared_data, flags, batch_rows, split):
    trace = tmp_path / "rows"
    two = _ok(_two_processes(tmp_path / "two", flags, shared_data, ICMA_ROW_TRACE=str(trace)))
    _ok(_one_process(tmp_path / "one", flags, shared_data))
    worst = _assert_same_run(tmp_path / "one", tmp_path / "two")
    print(f"max relative loss difference 1x8 vs 2x4: {worst:.3g}")
    _assert_rows_fed_once(trace, batch_rows)
    # fsdp 8 over 2 x 4 devices puts shards of each weight on both processes; data 4 x fsdp 2 keeps pairs inside one
    line = next(ln for ln in two.splitlines() if "parameter arrays are split across them" in ln)
    n_split = int(line.split("; ")[1].split(" of ")[0])
    assert (n_split > 0) == split, line
    # one writer: the files exist once, no temporary leftovers
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert not [n for n in names if ".tmp" in n], names
    for name in ("config.json", "metrics.jsonl", "loss.png", "predictions_test.tsv", "eval_test.json"):
        assert name in names


def _wait_for(proc_out: pathlib.Path, text: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc_out.read_text(errors="replace"):
        assert time.monotonic() < deadline, proc_out.read_text(errors="replace")[-3000:]
        time.sleep(0.5)


def _wait_for_steps(workdir: pathlib.Path, n: int, timeout: float = 300) -> None:
    path, deadline = workdir / "metrics.jsonl", time.monotonic() + timeout
    while not path.is_file() or len(path.read_text().splitlines()) < n:
        assert time.monotonic() < deadline, f"fewer than {n} steps in {path} after {timeout} s"
        time.sleep(0.5)


def _start_processes(workdir, flags, shared_data, log_dir: pathlib.Path) -> list[tuple[subprocess.Popen, pathlib.Path]]:
    """Two processes started directly (as a cluster scheduler would), no launcher to stop the survivors."""
    port, procs = launch.free_port(), []
    for i in (0, 1):
        log = log_dir / f"p{i}.log"
        env = launch.process_env(_env(shared_data), i, 2, port, 4)
        procs.append((subprocess.Popen(_train_cmd(workdir, flags), cwd=REPO, env=env, stdout=log.open("w"),
                                       stderr=subprocess.STDOUT), log))
    return procs


@pytest.mark.parametrize("victim", [0, 1])
def test_a_killed_process_stops_the_others(tmp_path, shared_data, victim):
    flags = [*FULL_PADDED, "--config.train.max_steps=100000", "--config.train.checkpoint_every=1000"]
    procs = _start_processes(tmp_path / "run", flags, shared_data, tmp_path)
    try:
        _wait_for_steps(tmp_path / "run", 2)
        procs[victim][0].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        survivor, log = procs[1 - victim]
        code = survivor.wait(timeout=60)
        took = time.monotonic() - killed_at
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
    text = log.read_text(errors="replace")
    assert code != 0 and took < 60, (code, took)
    if victim == 1:  # the coordinator names the task that stopped sending heartbeats
        assert "The following tasks are unhealthy (stopped sending heartbeats):\n1\n" in text, text[-3000:]
    else:  # the coordinator (process 0, JAX's "leader task") is gone
        assert "Either the leader task was preempted/died" in text, text[-3000:]
    print(f"process {1 - victim} stopped {took:.1f} s after process {victim} was killed")


def _sigterm_mid_run(cmd, env, log: pathlib.Path, signal_target=None) -> int:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        _wait_for(log, "train: step 2/")
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_sigterm_saves_and_resume_on_another_process_count(tmp_path, shared_data, first, then):
    """SIGTERM mid-run saves a checkpoint and exits 143; the same command with the other process count
    resumes from it and ends with the per-step losses of an uninterrupted run."""
    flags = [*FULL_PADDED, "--config.train.max_steps=24", "--config.train.checkpoint_every=100",
             "--config.eval.skip=True"]
    _ok(_one_process(tmp_path / "straight", flags, shared_data))
    run, log = tmp_path / "run", tmp_path / "first.log"
    if first == 2:
        code = _sigterm_mid_run(_launch_cmd(run, flags), _env(shared_data), log)
    else:
        code = _sigterm_mid_run(_train_cmd(run, flags),
                                _env(shared_data, XLA_FLAGS="--xla_force_host_platform_device_count=8"), log)
    text = log.read_text()
    assert code == 143, text[-3000:]
    assert "stopped by SIGTERM after step" in text, text[-3000:]
    stopped = int(text.split("stopped by SIGTERM after step ")[1].split(":")[0])
    assert 2 <= stopped < 24 and (run / "checkpoints" / str(stopped)).is_dir()
    again = _two_processes(run, flags, shared_data) if then == 2 else _one_process(run, flags, shared_data)
    assert f"checkpoints/{stopped} " in _ok(again)  # "resumed from .../checkpoints/<step> (data position ...)"
    a, b = _losses(tmp_path / "straight"), _losses(run)
    assert sorted(b) == list(range(1, 25))
    assert max(abs(a[s] - b[s]) / abs(a[s]) for s in a) <= 1e-5, (a, b)
    print(f"{first} -> {then} processes: stopped after step {stopped}, resumed, losses equal the straight run")
