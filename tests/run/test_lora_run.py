"""LoRA fine-tuning through `train_and_evaluate` (the tiny config trains fully otherwise), with the zero-shot
baseline's output files next to the tuned model's."""

import json
import pathlib

import jax

from icma_jax import config as cfg_lib
from icma_jax.data.char_tokenizer import char_tokenizer
from icma_jax.models import LoraConfig, abstract_variables, build_model, init_lora
from icma_jax.run import train_and_evaluate
from icma_jax.run.backbone import tiny_lm_config
from icma_jax.run.run_log import read_losses

REPO = pathlib.Path(__file__).resolve().parents[2]
RANK, ALPHA = 4, 8.0


def test_lora_run_trains_the_adapters_only_and_writes_the_zero_shot_outputs(tmp_path, shared_data, monkeypatch,
                                                                            capsys):
    monkeypatch.setenv("ICMA_DATA_DIR", str(shared_data))
    d = cfg_lib.load_config_file(str(REPO / "configs" / "tiny.py")).to_dict()
    d["model"].update(finetune="lora", lora_rank=RANK, lora_alpha=ALPHA, lora_dropout=0.0)
    d["train"].update(max_steps=4, lr=3e-2, warmup_steps=1)
    d["eval"]["zero_shot_baseline"] = True
    train_and_evaluate(d, tmp_path)
    out = capsys.readouterr().out

    lm_config = tiny_lm_config(len(char_tokenizer()))
    lora_config = LoraConfig.for_family("llama", rank=RANK, alpha=ALPHA, dropout=0.0)
    n_lora = sum(x.size for x in jax.tree.leaves(jax.eval_shape(
        lambda: init_lora(build_model(lm_config, lora_config), lora_config, jax.random.key(0)))))
    n_base = sum(x.size for x in jax.tree.leaves(abstract_variables(build_model(lm_config))["params"]))
    assert f"parameters: {n_base + n_lora:,} total, {n_lora:,} trainable" in out, out[-2000:]
    losses = read_losses(tmp_path)
    assert sorted(losses) == [1, 2, 3, 4] and losses[4] < losses[1], losses  # the adapters learn

    for tag in ("test", "test_zero_shot"):
        header, *rows = (tmp_path / f"predictions_{tag}.tsv").read_text().splitlines()
        assert header == "description\tground truth\toutput" and len(rows) == 4, tag
        doc = json.loads((tmp_path / f"eval_{tag}.json").read_text())
        assert doc["rows"] == 4 and "validity" in doc["metrics"], tag
    tuned = json.loads((tmp_path / "eval_test.json").read_text())["prompts"]
    zero_shot = json.loads((tmp_path / "eval_test_zero_shot.json").read_text())["prompts"]
    assert tuned["prompts"] == zero_shot["prompts"] == 4
    assert zero_shot != tuned  # the baseline's prompts carry no context examples
