"""A LoRA run trained by two processes (`icma-jax launch`, 2 x 4 CPU devices, the base weights split across both)
is exported by one process: `export --run` gives the adapter process 0 wrote at the run's end, and transformers +
peft decode the run's greedy tokens with it."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from safetensors.numpy import load_file

from icma_jax.cli import main
from icma_jax.data.records import load_split
from icma_jax.run.predict import from_run

pytestmark = [pytest.mark.slow, pytest.mark.torch]
REPO = pathlib.Path(__file__).resolve().parents[2]


def test_a_two_process_lora_run_exports_and_loads_in_peft(tmp_path, tiny_base, chebi_slice):
    import numpy as np
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    workdir = tmp_path / "pod"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") or k == "JAX_PLATFORMS"}
    cmd = [sys.executable, "-m", "icma_jax.cli", "launch", "--processes", "2", "--devices-per-process", "4", "--",
           sys.executable, "train.py", "--config", "configs/tiny.py:steps=2", "--workdir", str(workdir),
           f"--config.data.data_dir={chebi_slice}", "--config.data.database_limit=40",
           f"--config.model.path={tiny_base}", "--config.model.finetune=lora", "--config.model.lora_rank=4",
           "--config.model.lora_alpha=8.0", "--config.model.lora_dropout=0.0", "--config.train.lr=0.03",
           "--config.mesh.data=1", "--config.mesh.fsdp=8", "--config.mesh.heartbeat_timeout_s=30"]
    out = subprocess.run(cmd, cwd=REPO,
                         env={**env, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert "parameter arrays are split across them" in out.stdout + out.stderr

    assert main(["export", "--run", str(workdir), "--out", str(tmp_path / "a")]) == 0
    want, got = (load_file(str(d / "adapter_model.safetensors")) for d in (workdir / "export", tmp_path / "a"))
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tiny_base.resolve())

    predictor = from_run(workdir)
    preds = predictor(load_split(chebi_slice / "chebi20" / "test.txt").texts[:4])
    _, *rows = (workdir / "predictions_test.tsv").read_text().splitlines()
    assert [p.answer for p in preds] == [r.split("\t")[2] for r in rows]
    torch.set_num_threads(1)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32),
                                      tmp_path / "a").eval()
    gen = predictor.plan.generation
    for p in preds:
        ids = torch.tensor([p.prompt_ids])
        with torch.no_grad():
            new = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen.max_new_tokens,
                                 do_sample=False, repetition_penalty=gen.repetition_penalty, eos_token_id=2,
                                 pad_token_id=0)[0, len(p.prompt_ids):].tolist()
        assert (new[:new.index(2)] if 2 in new else new) == list(p.tokens)
