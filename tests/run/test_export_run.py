"""`icma-jax export --run` on a tiny LoRA run: the adapter the run wrote at its end, the same adapter read back
from the checkpoint, and transformers + peft (and the merged checkpoint) decoding the run's greedy tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from icma_jax.cli import main
from icma_jax.data.records import load_split
from icma_jax.run.predict import from_run

pytestmark = pytest.mark.torch


def test_the_run_writes_its_adapter_and_export_run_reads_the_same_from_the_checkpoint(lora_run, tiny_base,
                                                                                     tmp_path):
    end = lora_run / "export"
    assert sorted(p.name for p in end.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert main(["export", "--run", str(lora_run), "--out", str(tmp_path / "a")]) == 0
    want, got = load_file(str(end / "adapter_model.safetensors")), load_file(str(tmp_path / "a" /
                                                                                  "adapter_model.safetensors"))
    assert sorted(got) == sorted(want) and len(got) == 2 * 7 * 2  # A and B, 7 modules, 2 layers
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert main(["export", "--run", str(lora_run), "--step", "2", "--out", str(tmp_path / "s2")]) == 0
    older = load_file(str(tmp_path / "s2" / "adapter_model.safetensors"))
    assert any(not np.array_equal(older[k], want[k]) for k in want)  # --step picks the checkpoint
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_base.resolve()) and config["r"] == 4
    card = (tmp_path / "a" / "README.md").read_text()
    assert f"holds `{tiny_base.resolve()}`: a local transformers directory" in card
    assert f"PeftModel.from_pretrained(base, '{(tmp_path / 'a').resolve()}')" in card


def _hf_tokens(model, prompt_ids, gen) -> list[int]:
    import torch

    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen.max_new_tokens,
                             do_sample=False, repetition_penalty=gen.repetition_penalty, eos_token_id=2,
                             pad_token_id=0)
    new = out[0, len(prompt_ids):].tolist()
    return new[:new.index(2)] if 2 in new else new


def test_transformers_and_peft_decode_the_runs_greedy_tokens(lora_run, tiny_base, chebi_slice, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    predictor = from_run(lora_run)
    preds = predictor(load_split(chebi_slice / "chebi20" / "test.txt").texts[:4])
    _, *rows = (lora_run / "predictions_test.tsv").read_text().splitlines()
    assert [p.answer for p in preds] == [r.split("\t")[2] for r in rows]  # ours, as the run decoded them
    gen = predictor.plan.generation
    assert gen.greedy and gen.max_new_tokens == 8

    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32),
                                      lora_run / "export").eval()
    assert [_hf_tokens(tuned, p.prompt_ids, gen) for p in preds] == [list(p.tokens) for p in preds]
    assert main(["export", "--run", str(lora_run), "--merged", "--out", str(tmp_path / "m")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.float32).eval()
    assert [_hf_tokens(merged, p.prompt_ids, gen) for p in preds] == [list(p.tokens) for p in preds]
    base = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    assert [_hf_tokens(base, p.prompt_ids, gen) for p in preds] != [list(p.tokens) for p in preds]  # the adapter acts


def test_a_full_fine_tuning_run_exports_a_transformers_checkpoint(tiny_base, chebi_slice, tmp_path):
    import ml_dtypes
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from icma_jax import config as cfg_lib
    from icma_jax.models.hf_weights import hf_state_dict
    from icma_jax.run import train_and_evaluate
    from icma_jax.run.export import restore_run

    d = cfg_lib.load_config_file("configs/tiny.py").to_dict()
    d["data"].update(data_dir=str(chebi_slice), database_limit=40)
    d["model"]["path"] = str(tiny_base)
    d["train"].update(max_steps=1, warmup_steps=0, checkpoint_every=1)
    d["eval"]["skip"] = True
    train_and_evaluate(d, tmp_path / "run")
    assert not (tmp_path / "run" / "export").exists()  # full fine-tuning: exported only on request
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "m"), "--dtype", "bfloat16"]) == 0
    run = restore_run(tmp_path / "run")
    want = hf_state_dict(run.trainable, run.lm_config, "float32")
    saved, base = load_file(str(tmp_path / "m" / "model.safetensors")), load_file(str(tiny_base / "model.safetensors"))
    assert sorted(saved) == sorted(want) and all(v.dtype == ml_dtypes.bfloat16 for v in saved.values())
    for k in want:
        np.testing.assert_array_equal(saved[k], want[k].astype(ml_dtypes.bfloat16))
    assert any(not np.array_equal(saved[k].astype(np.float32), base[k].astype(np.float32)) for k in base)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert model.dtype == torch.bfloat16 and AutoTokenizer.from_pretrained(tmp_path / "m")("CC")["input_ids"]
    assert "fine-tuned transformers checkpoint" in (tmp_path / "m" / "README.md").read_text()
