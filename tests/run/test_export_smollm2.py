"""`icma-jax export --run` on real weights: one LoRA step of SmolLM2-135M (the embedded Q4_1 GGUF) through
`train_and_evaluate`; transformers loads the same GGUF (`gguf_file=`), peft the exported adapter, and greedy
decoding gives the run's tokens."""

from __future__ import annotations

import json
import pathlib

import pytest
import reference_deps

from icma_jax import config as cfg_lib
from icma_jax.data.records import load_split
from icma_jax.models.registry import resolve_model
from icma_jax.run import train_and_evaluate
from icma_jax.run.predict import from_run

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("gguf")
pytestmark = [pytest.mark.torch, pytest.mark.slow]
REPO = pathlib.Path(__file__).resolve().parents[2]


def test_peft_on_the_gguf_base_decodes_the_runs_tokens(tmp_path, chebi_slice):
    try:
        source = resolve_model("smollm2-135m")
    except FileNotFoundError as e:
        reference_deps.missing(f"{e} (make install-test installs it)")
    d = cfg_lib.load_config_file(str(REPO / "configs" / "tiny.py:task=mol2cap")).to_dict()
    d["data"].update(data_dir=str(chebi_slice), database_limit=40, train_limit=2, test_limit=2)
    d["model"].update(name="smollm2-135m", finetune="lora", lora_rank=4, lora_alpha=8.0, lora_dropout=0.0)
    d["prompt"]["cutoff_len"] = 384
    # one step at a large learning rate: Adam moves every adapter weight by ~lr, so the answers change visibly
    d["train"].update(max_steps=1, lr=0.3, warmup_steps=0, batch_size=2, buckets=(384,), checkpoint_every=1)
    d["eval"].update(batch_size=2)
    d["mesh"].update(data=1, tensor=-1)  # two sequences per step on 8 devices: the weights split, not the batch
    train_and_evaluate(d, tmp_path / "run")
    export = tmp_path / "run" / "export"
    config = json.loads((export / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(source.directory.resolve())
    assert f"gguf_file={source.gguf_file!r}" in (export / "README.md").read_text()

    predictor = from_run(tmp_path / "run")
    preds = predictor(load_split(chebi_slice / "chebi20" / "test.txt").smiles[:2])
    _, *rows = (tmp_path / "run" / "predictions_test.tsv").read_text().splitlines()
    assert [p.answer for p in preds] == [r.split("\t")[2] for r in rows]  # ours, as the run decoded them
    gen = predictor.plan.generation
    torch.set_num_threads(1)
    base = transformers.AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"],
                                                             gguf_file=source.gguf_file, dtype=torch.float32)
    eos = predictor.tokenizer.eos_token_id

    def tokens(model, prompt_ids):
        ids = torch.tensor([prompt_ids])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen.max_new_tokens,
                                 do_sample=False, repetition_penalty=gen.repetition_penalty, eos_token_id=eos,
                                 pad_token_id=predictor.tokenizer.pad_token_id)
        new = out[0, len(prompt_ids):].tolist()
        return new[:new.index(eos)] if eos in new else new

    ours = [list(p.tokens) for p in preds]
    untuned = [tokens(base.eval(), p.prompt_ids) for p in preds]
    tuned = peft.PeftModel.from_pretrained(base, export).eval()
    assert [tokens(tuned, p.prompt_ids) for p in preds] == ours
    assert untuned != ours and any(ours), (untuned, ours)  # the adapter changes the answers
