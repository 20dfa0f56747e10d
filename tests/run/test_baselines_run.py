"""A run's results table holds the honest baselines: the tuned model, retrieval copy, zero-shot and in-context
learning without tuning, with the answers cut by max_new_tokens counted and the budget derived from the data."""

import json
import pathlib

from icma_jax import config as cfg_lib
from icma_jax.data.char_tokenizer import char_tokenizer
from icma_jax.eval.baselines import token_budget
from icma_jax.eval.predictions import read_predictions
from icma_jax.retrieval import read_neighbours_jsonl
from icma_jax.run import context, train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_run_scores_four_systems_with_a_data_derived_budget(tmp_path, shared_data, monkeypatch, capsys):
    monkeypatch.setenv("ICMA_DATA_DIR", str(shared_data))
    d = cfg_lib.load_config_file(str(REPO / "configs" / "tiny.py")).to_dict()
    d["train"]["max_steps"] = 2
    d["eval"].update(max_new_tokens=None, zero_shot_baseline=True, in_context_baseline=True)
    results = train_and_evaluate(d, tmp_path)
    out = capsys.readouterr().out

    assert list(results) == ["test", "retrieval_copy", "zero_shot", "icl_untuned"]
    cfg = cfg_lib.from_config_dict(d)
    splits = context.load_splits(cfg.data)
    tok = char_tokenizer()
    budget = token_budget([len(tok(s, add_special_tokens=False)["input_ids"]) + 1 for s in splits.train.smiles])
    assert f"eval.max_new_tokens = {budget} " in out
    for tag in ("test", "test_zero_shot", "test_in_context_untuned"):
        doc = json.loads((tmp_path / f"eval_{tag}.json").read_text())
        assert doc["decoding"]["max_new_tokens"] == budget
        assert 0 <= doc["metrics"]["n_cut"] <= doc["rows"]
    assert results["retrieval_copy"]["n_cut"] is None  # nothing generated
    # retrieval copy: each test query's best-ranked database molecule, as the run retrieved it
    nb = read_neighbours_jsonl(tmp_path / "neighbours" / "test.jsonl")
    copied = read_predictions(tmp_path / "predictions_test_retrieval_copy.tsv").outputs
    assert list(copied) == [splits.database.smiles[int(p[0])] for p in nb.positions(splits.database)]
    table = out[out.index("metric (cap2mol)"):]
    assert "retrieval_copy" in table and "icl_untuned" in table and "cut at max_new_tokens" in table
