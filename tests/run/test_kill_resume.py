"""SIGKILL at the worst moments of a tiny run (before the first checkpoint, in the middle of an async
checkpoint save, during evaluation), each followed by a plain re-run of the same command: the finished
run equals an uninterrupted one (per-step losses and predictions)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS = 5
POLL_S = 0.002


def _cmd(workdir: pathlib.Path) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), f"--config={REPO / 'configs' / 'tiny.py'}",
            f"--workdir={workdir}", f"--config.train.max_steps={STEPS}", "--config.train.checkpoint_every=1",
            "--config.train.keep_checkpoints=3"]


def _losses(workdir: pathlib.Path) -> dict[int, float]:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]
    return {int(r["step"]): r["loss"] for r in rows}


def _in_flight_saves(workdir: pathlib.Path) -> list[str]:
    ckpt = workdir / "checkpoints"
    return [p.name for p in ckpt.iterdir() if "tmp" in p.name] if ckpt.is_dir() else []


def _committed(workdir: pathlib.Path) -> list[str]:
    ckpt = workdir / "checkpoints"
    return sorted(p.name for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.is_dir() else []


def _kill_when(workdir: pathlib.Path, env: dict, moment, what: str) -> None:
    """Start the run, SIGKILL it the first time `moment()` holds (polled every 2 ms)."""
    with open(workdir.parent / f"{workdir.name}.log", "a") as log:
        proc = subprocess.Popen(_cmd(workdir), env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.time() + 600
        while not moment():
            assert proc.poll() is None, f"the run ended before {what}"
            assert time.time() < deadline, f"no {what} within 600 s"
            time.sleep(POLL_S)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _finish(workdir: pathlib.Path, env: dict) -> str:
    proc = subprocess.run(_cmd(workdir), env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_sigkill_before_checkpoint_during_save_and_during_eval_then_resume_equals_uninterrupted(
        tmp_path, shared_data):
    env = dict(os.environ, ICMA_DATA_DIR=str(shared_data), JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
               XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"))
    reference, run = tmp_path / "reference", tmp_path / "killed"
    _finish(reference, env)

    # 1. before the first checkpoint: the prompts are built, nothing is saved yet
    _kill_when(run, env, lambda: (run / "neighbours" / "train.jsonl").is_file() and not _committed(run),
               "retrieval to finish")
    assert not _committed(run) and not _losses(run)
    # 2. in the middle of an async save: Orbax's temporary folder exists, the step is not committed
    _kill_when(run, env, lambda: bool(_in_flight_saves(run)), "a checkpoint save in flight")
    assert _in_flight_saves(run), "the kill did not land inside a save"
    # 3. during evaluation: training is done, the predictions are not written yet
    _kill_when(run, env, lambda: max(_losses(run), default=0) == STEPS and str(STEPS) in _committed(run)
               and not (run / "predictions_test.tsv").exists(), "evaluation to start")
    assert not (run / "predictions_test.tsv").exists()

    out = _finish(run, env)
    assert f"resumed from {run / 'checkpoints'}/{STEPS}" in out
    assert _losses(run) == _losses(reference)  # bit-identical per-step losses
    assert (run / "predictions_test.tsv").read_text() == (reference / "predictions_test.tsv").read_text()
    assert json.loads((run / "eval_test.json").read_text())["metrics"] == \
        json.loads((reference / "eval_test.json").read_text())["metrics"]
