"""The main job's path runs where torch cannot be imported (tests/without_torch.py hides the torch stack)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

WITHOUT_TORCH = str(REPO / "tests" / "without_torch.py")


def _run(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, WITHOUT_TORCH, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_the_blocker_hides_torch():
    out = _run("-c", "import importlib.util, json; import transformers, scipy.stats\n"
                     "try:\n    import torch\nexcept ImportError as e:\n    err = str(e)\n"
                     "print(json.dumps([importlib.util.find_spec('torch') is None, err,"
                     " transformers.utils.is_torch_available()]))")
    assert out.returncode == 0, out.stderr
    found_none, err, available = json.loads(out.stdout.strip().splitlines()[-1])
    assert found_none and "torch" in err and not available


def test_cap2mol_metrics_without_torch_skip_fcd_in_one_line():
    out = _run("-c", "import json; from icma_jax.eval.mol_metrics import cap2mol_metrics\n"
                     "print(json.dumps(cap2mol_metrics(['CCO', 'c1ccccc1', 'CC(=O)O'], ['CCO', 'c1ccccc1O', 'CC'])))")
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["fcd"] is None and m["fcd_note"] == "FCD skipped: it needs torch and fcd: pip install 'icma-jax[torch]'"
    assert m["exact_match"] == pytest.approx(1 / 3) and m["validity"] == 1.0 and m["maccs_fts"] is not None


@pytest.mark.slow
def test_tiny_job_runs_to_the_end_without_torch(shared_data, tmp_path):
    workdir = tmp_path / "run"
    out = _run("train.py", "--config", "configs/tiny.py", "--workdir", str(workdir),
               "--config.train.max_steps=2", "--config.data.test_limit=2",
               env={"ICMA_DATA_DIR": str(shared_data),
                    "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "PyTorch was not found" not in out.stdout + out.stderr
    doc = json.loads((workdir / "eval_test.json").read_text())
    assert doc["rows"] == 2 and doc["metrics"]["fcd"] is None and "validity" in doc["metrics"]
    assert (workdir / "predictions_test.tsv").is_file()
