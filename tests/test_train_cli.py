"""train.py / `icma-jax train`: a user error is one line naming the key or file, and exit status 2."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from icma_jax import config as cfg_lib
from icma_jax.cli import train as cli_train

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.py")


def _error(capsys, workdir, *flags, config=TINY) -> str:
    rc = cli_train.main([f"--config={config}", f"--workdir={workdir}", *flags], prog="train.py")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("train.py: error: "), err
    return err


@pytest.mark.parametrize("flag,expected", [
    ("--config.train.lr_typo=1", "unknown config key train.lr_typo (did you mean train.lr?)"),
    ("--config.trian.lr=1", "unknown config key trian.lr (did you mean train.lr?)"),
    ("--config.train.log_every=1", "unknown config key train.log_every"),
    ("--config.train.lr=big", "--config.train.lr=big"),
    ("--config.train.max_steps=0", "train.max_steps=0 must be >= 1 or None"),
    ("--config.retrieval.method=graph", "retrieval.method='graph' is now spelled 'gnn'"),
    ("--config.data.data_dir=/nowhere", "/nowhere/chebi20/validation.txt not found"),
])
def test_user_errors_are_one_line(capsys, tmp_path, flag, expected):
    assert expected in _error(capsys, tmp_path, flag)


def test_config_file_errors_name_the_file(capsys, tmp_path):
    assert "tiny.py:step=3: unknown config argument 'step'; did you mean 'steps'" in _error(
        capsys, tmp_path, config=f"{TINY}:step=3")
    assert f"config file {tmp_path / 'nope.py'} not found" in _error(capsys, tmp_path, config=str(tmp_path / "nope.py"))


def test_run_directory_in_older_spellings_is_refused(capsys, tmp_path):
    old = cfg_lib.to_dict(cfg_lib.from_config_dict(cfg_lib.load_config_file(TINY)))
    old["train"]["log_every"] = 1  # a key that existed when the directory was written
    (tmp_path / "config.json").write_text(json.dumps(old))
    err = _error(capsys, tmp_path)
    assert "config.json was written in older config spellings" in err and "train.log_every" in err


def test_train_py_prints_the_line(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), f"--config={TINY}", f"--workdir={tmp_path}",
                           "--config.train.lr_typo=1"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "train.py: error: unknown config key train.lr_typo (did you mean train.lr?)"
