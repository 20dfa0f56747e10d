"""bench/torch_parity.py, short: transformers.Trainer + PEFT and our step agree step by step over a run."""

import importlib.util
import pathlib
import sys

import pytest

pytestmark = pytest.mark.torch

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "torch_parity.py"


@pytest.fixture(scope="module")
def torch_parity():
    pytest.importorskip("peft")
    spec = importlib.util.spec_from_file_location("torch_parity", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_short_run_matches_the_trainer(torch_parity, shared_data, capsys):
    """Sliding-window Mistral with LoRA (loss on the whole text, micro-batch means) and OPT fully fine-tuned
    (answer-only loss, token mean): 6 steps through warm-up, decay, clipping and accumulation 2."""
    out = torch_parity.main(["--case", "tiny-mistral:lora:yes:micro_mean", "--case", "tiny-opt:full:no:token_mean",
                             "--steps", "6", "--warmup", "2", "--cutoff", "256", "--threads", "1",
                             "--data-dir", str(shared_data)])
    printed = capsys.readouterr().out
    assert "max relative loss difference vs pytorch:" in printed
    assert out["max_rel"] <= 1e-4, f"relative loss difference {out['max_rel']:.2e} > 1e-4"
    assert out["weight_diff"] <= 1e-5, f"trained weights differ by {out['weight_diff']:.2e}"
    assert out["ok"] and "rounding floor" in printed
    for r in out["results"]:
        assert r["torch"].lrs[0] == 0.0 and r["torch"].lrs[2] > r["torch"].lrs[1] > 0  # warm-up inside the run
        assert r["ours"].losses[-1] != r["ours"].losses[0]  # the weights really moved


def test_case_syntax_is_checked(torch_parity):
    assert str(torch_parity.Case.parse("tiny-llama:lora:no:micro_mean:bf16")) == "tiny-llama:lora:no:micro_mean:bf16"
    with pytest.raises(ValueError, match="MODEL:lora"):
        torch_parity.Case.parse("tiny-llama:lora:maybe:token_mean")


def test_weight_bound_is_the_rounding_floor_when_that_is_larger(torch_parity, capsys):
    """A real checkpoint's LoRA: |dw| 1.9e-4 passes against a measured floor of 5e-5, fails against 1e-6."""
    import argparse
    import types

    run = types.SimpleNamespace(step_s=[0.1])
    args = argparse.Namespace(weight_tolerance=1e-5, floor_factor=10.0, tolerance=1e-4, plot=None)

    def result(floor):
        return {"case": torch_parity.Case.parse("smollm2-135m:lora:no:token_mean"), "torch": run, "ours": run,
                "max_rel": 6e-6, "weight_diff": 1.9e-4, "weight_name": "lora_A", "weight_floor": floor}

    assert torch_parity.report([result(5e-5)], args)["ok"]
    assert "bound 5.0e-04 = max(1e-05, 10 x rounding floor 5.0e-05)" in capsys.readouterr().out
    assert not torch_parity.report([result(1e-6)], args)["ok"]
    assert not torch_parity.report([result(5e-5), {**result(1e-6), "weight_diff": 2e-5}], args)["ok"]
