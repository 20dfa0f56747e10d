"""End to end on the tiny config: outputs, loss goes down, clear early errors, NaN stop, kill/resume equality.

`train.py --config configs/tiny.py` runs as a subprocess (like a user would), on 8 fake CPU devices.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from icma_jax import config as cfg_lib
from icma_jax.cli import train as cli_train
from icma_jax.run import loop
from icma_jax.training.checkpoint import Checkpointer
from icma_jax.run.run_log import read_losses

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.py")
STEPS = 8


@pytest.fixture(scope="module")
def env(tmp_path_factory, shared_data) -> dict:
    """Subprocess environment: 8 fake CPU devices, the shared data, one persistent compilation cache
    (the runs compile identical programs; a cache hit returns the same executable)."""
    return dict(os.environ, ICMA_DATA_DIR=str(shared_data), JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
                XLA_FLAGS="--xla_force_host_platform_device_count=8",
                JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")))


def _cmd(workdir: pathlib.Path) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), f"--config={TINY}", f"--workdir={workdir}",
            f"--config.train.max_steps={STEPS}", "--config.train.eval_every=4", "--config.train.eval_subset=2"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, env) -> pathlib.Path:
    """One uninterrupted tiny run (train + evaluate)."""
    workdir = tmp_path_factory.mktemp("full")
    proc = subprocess.run(_cmd(workdir), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (workdir / "stdout.txt").write_text(proc.stdout + proc.stderr)
    return workdir


def test_run_writes_every_output(full_run):
    for name in ("config.json", "metrics.jsonl", "loss.png", "predictions_test.tsv", "eval_test.json"):
        assert (full_run / name).is_file(), name
    assert any((full_run / "tensorboard").iterdir())
    valid = json.loads((full_run / "eval_valid_step4.json").read_text())  # periodic evaluation
    assert valid["rows"] == 2 and valid["split"] == "chebi20/validation"
    assert (full_run / "neighbours" / "train.jsonl").is_file()
    rows = [json.loads(line) for line in (full_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert {"loss", "lr", "tokens_per_s", "elapsed", "grad_norm"} <= set(rows[0])
    doc = json.loads((full_run / "eval_test.json").read_text())
    assert doc["rows"] == 4 and "validity" in doc["metrics"] and doc["prompts"]["prompts"] == 4
    header = (full_run / "predictions_test.tsv").read_text().splitlines()[0]
    assert header == "description\tground truth\toutput"
    log = (full_run / "stdout.txt").read_text()
    assert "parameters:" in log and "trainable" in log and "training prompts:" in log
    assert cfg_lib.from_config_dict(json.loads((full_run / "config.json").read_text())).train.max_steps == STEPS


def test_loss_decreases(full_run):
    losses = read_losses(full_run)
    assert losses[STEPS] < losses[1] - 0.2, losses


def test_sigkill_between_checkpoints_then_resume_gives_identical_losses(full_run, tmp_path, env):
    workdir = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(workdir), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 400
    # checkpoints at 2, 4, ...: kill once step 2's (async) save is committed and step 3 has run
    while time.time() < deadline and (max(read_losses(workdir), default=0) < 3
                                      or not (workdir / "checkpoints" / "2").is_dir()):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = max(read_losses(workdir))
    assert 3 <= done < STEPS, done
    resumed = subprocess.run(_cmd(workdir), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert read_losses(workdir) == read_losses(full_run)  # bit-identical per-step losses
    assert (workdir / "predictions_test.tsv").read_text() == (full_run / "predictions_test.tsv").read_text()


def _tiny(**changes) -> dict:
    d = cfg_lib.load_config_file(TINY).to_dict()
    d["train"]["eval_every"], d["train"]["eval_subset"] = 4, 2
    for key, value in changes.items():
        group, field = key.split("__")
        d[group][field] = value
    return d


def test_clear_errors_before_any_compilation(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("ICMA_DATA_DIR", str(shared_data))
    compiled = []
    monkeypatch.setattr(loop, "make_train_step", lambda *a, **k: compiled.append(1))
    bad = _tiny()
    bad["train"]["lr_peak"] = 1.0
    with pytest.raises(ValueError, match="train.lr_peak"):
        loop.train_and_evaluate(bad, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="nowhere/chebi20/validation.txt"):
        loop.train_and_evaluate(_tiny(data__data_dir=str(tmp_path / "nowhere")), tmp_path / "b")
    with pytest.raises(ValueError, match="1024 positions"):
        loop.train_and_evaluate(_tiny(prompt__cutoff_len=2048, train__buckets=(2048,)), tmp_path / "c")
    with pytest.raises(ValueError, match="batch_size=6 must divide"):
        loop.train_and_evaluate(_tiny(train__batch_size=6), tmp_path / "d")
    with pytest.raises(ValueError, match="pack_length=512 is shorter than prompt.cutoff_len=768"):
        loop.train_and_evaluate(_tiny(train__pack_length=512), tmp_path / "e")
    assert not compiled


def test_packed_run_trains_on_every_prompt(tmp_path, shared_data, monkeypatch, capsys):
    """train.pack_length: the 16 prompts (about 330 characters each) go into rows of 1536, 4 or 5 to a row."""
    monkeypatch.setenv("ICMA_DATA_DIR", str(shared_data))
    loop.train_and_evaluate(_tiny(train__pack_length=1536, train__batch_size=8, train__max_steps=3,
                                  train__lr=1e-2, eval__skip=True), tmp_path)
    out = capsys.readouterr().out
    assert "16 sequences packed into rows of 1536 (" in out and "real); 1 batches per epoch; 3 steps" in out
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[2]["loss"] < rows[0]["loss"]  # the same 16 prompts three times: it learns them


def test_other_config_in_same_workdir_is_refused(full_run, shared_data, monkeypatch):
    monkeypatch.setenv("ICMA_DATA_DIR", str(shared_data))
    with pytest.raises(ValueError, match="train.lr"):
        loop.train_and_evaluate(_tiny(train__max_steps=STEPS, train__lr=1e-2), full_run)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, shared_data, monkeypatch, capsys):
    monkeypatch.setenv("ICMA_DATA_DIR", str(shared_data))
    flags = dict(lr=1e30, warmup_steps=0, max_steps=4, checkpoint_every=1, clip_norm=1e30, eval_every=4, eval_subset=2)
    rc = cli_train.main([f"--config={TINY}", f"--workdir={tmp_path}", *(f"--config.train.{k}={v}" for k, v in
                                                                          flags.items())], prog="train.py")
    last = capsys.readouterr().err.strip().splitlines()[-1]  # above it: the progress bar
    assert rc == 2 and last.startswith("train.py: error: non-finite training metrics at step"), last
    losses = read_losses(tmp_path)
    ckpt = Checkpointer(tmp_path / "checkpoints")
    assert ckpt.latest_step() == max(losses) >= 1  # every kept checkpoint had a finite loss
    assert not (tmp_path / "eval_test.json").exists()
    ckpt.close()


def test_cli_train_is_train_py_and_rejects_unknown_overrides(tmp_path, env):
    proc = subprocess.run([sys.executable, "-m", "icma_jax.cli", "train", f"--config={TINY}",
                           f"--workdir={tmp_path}", "--config.train.learning_rate=1e-4"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "icma-jax train: error: unknown config key" in proc.stderr and "learning_rate" in proc.stderr
