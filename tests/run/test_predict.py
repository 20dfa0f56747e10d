"""`icma-jax predict` on a tiny LoRA run (the run's own prompts and answers, --input, --out TSV/JSONL, one-line
errors) and without a run (in-context learning with an untuned model: retrieval, prompt and decoding checked
against the libraries')."""

from __future__ import annotations

import json

import numpy as np
from rdkit import Chem

from icma_jax.cli import main
from icma_jax.data import prompts
from icma_jax.data.prompts import Pair
from icma_jax.data.records import load_split
from icma_jax.eval.generate import GenerationConfig, generate
from icma_jax.models.loading import load_model
from icma_jax.retrieval import retrieve
from icma_jax.run import context, evaluate
from icma_jax.run.export import read_run_config
from icma_jax.run.predict import query_split


def _first_rows(src, dst, n):
    dst.write_text("".join(src.read_text().splitlines(keepends=True)[:n + 1]))
    return dst


def _run_outputs(workdir):
    _, *rows = (workdir / "predictions_test.tsv").read_text().splitlines()
    return [r.split("\t")[2] for r in rows]


def test_predict_reproduces_the_runs_prompts_and_answers(lora_run, chebi_slice, tmp_path, capsys):
    rows = _first_rows(chebi_slice / "chebi20" / "test.txt", tmp_path / "rows.tsv", 4)
    out = tmp_path / "p.jsonl"
    assert main(["predict", "--run", str(lora_run), "--input", str(rows), "--out", str(out), "--show-context"]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["answer"] for g in got] == _run_outputs(lora_run)
    cfg = read_run_config(lora_run)  # the prompts the run's evaluation built from its own neighbour file
    splits = context.load_splits(cfg.data)
    lm = load_model(cfg.model.path)
    want, _ = evaluate._prompt_ids(evaluate.plan(cfg), splits.database, splits.test,
                                   context.neighbours_for_run(cfg, splits, lora_run).test, lm.tokenizer, False)
    assert [g["prompt_ids"] for g in got] == [w.tolist() for w in want]
    printed = capsys.readouterr().out
    shown = [f"context examples in the prompt: {len(g['context'])} (most similar first)" for g in got]
    assert all(line in printed for line in shown) and printed.count("context examples in the prompt") == 4
    assert printed.count(". score ") == sum(len(g["context"]) for g in got) > 0
    for g in got:  # Cap2Mol answers: RDKit's verdict, canonical SMILES and InChIKey
        mol = Chem.MolFromSmiles(g["answer"]) if g["answer"] else None
        assert g["valid"] == (mol is not None)
        if mol is not None:
            assert g["canonical"] == Chem.MolToSmiles(mol) and g["inchikey"] == Chem.MolToInchiKey(mol)
            assert f"canonical SMILES: {g['canonical']}  InChIKey: {g['inchikey']}" in printed
    assert printed.count("INVALID: RDKit cannot parse") == sum(not g["valid"] for g in got)
    assert any(g["valid"] for g in got) and not all(g["valid"] for g in got)


def test_one_caption_writes_a_tsv_row(lora_run, chebi_slice, tmp_path):
    caption = load_split(chebi_slice / "chebi20" / "test.txt").texts[0]
    out = tmp_path / "p.tsv"
    assert main(["predict", "--run", str(lora_run), "--caption", caption, "--out", str(out)]) == 0
    header, row = out.read_text().splitlines()
    assert header == "input\toutput\tvalid\tcanonical_smiles\tinchikey"
    cells = row.split("\t")
    assert cells[:2] == [caption, _run_outputs(lora_run)[0]]
    mol = Chem.MolFromSmiles(cells[1]) if cells[1] else None
    assert cells[2:] == ([str(True), Chem.MolToSmiles(mol), Chem.MolToInchiKey(mol)] if mol else ["False", "", ""])


def test_bad_queries_are_one_line_errors(lora_run, tiny_base, chebi_slice, tmp_path, capsys):
    db = str(chebi_slice / "chebi20" / "validation.txt")
    assert main(["predict", "--run", str(lora_run), "--smiles", "CCO"]) == 2
    assert main(["predict", "--model", str(tiny_base), "--database", db, "--task", "mol2cap",
                 "--smiles", "C1CC(("]) == 2
    bad = tmp_path / "queries.txt"
    bad.write_text("CCO\n\nc1ccccc1\nnot a molecule\n")
    assert main(["predict", "--model", str(tiny_base), "--database", db, "--task", "mol2cap", "--input", str(bad)]) == 2
    assert main(["predict", "--run", str(lora_run), "--caption", "x", "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["icma-jax predict: error: the task is cap2mol: give --caption (or --input), not --smiles",
                   "icma-jax predict: error: --smiles: invalid SMILES 'C1CC((' (RDKit could not parse it)",
                   f"icma-jax predict: error: {bad}:4: invalid SMILES 'not a molecule' (RDKit could not parse it)",
                   f"icma-jax predict: error: --out {tmp_path / 'p.csv'}: the name must end in .tsv or .jsonl"]


def test_without_a_run_in_context_learning_with_the_untuned_model(tiny_base, chebi_slice, tmp_path, capsys):
    db_path = chebi_slice / "chebi20" / "validation.txt"
    smiles = load_split(chebi_slice / "chebi20" / "test.txt").smiles[0]
    out = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(tiny_base), "--database", str(db_path), "--task", "mol2cap", "--smiles",
                 smiles, "--show-context", "--max-new-tokens", "6", "--out", str(out)]) == 0
    (got,) = [json.loads(line) for line in out.read_text().splitlines()]
    db = load_split(db_path)
    nb = retrieve("mol2cap", "morgan", db, query_split("mol2cap", [smiles]), k=10, progress=False)
    top2 = nb.positions(db)[0][:2]  # the default selection: the 2 best, most similar right before the query
    assert [e["cid"] for e in got["context"]] == [db.records[i].cid for i in top2]
    np.testing.assert_allclose([e["score"] for e in got["context"]], nb.scores[0][:2])
    lm = load_model(str(tiny_base))
    examples = [Pair(db.records[i].smiles, db.records[i].text) for i in top2]
    text = prompts.source_text("mol2cap", Pair(smiles, ""), examples, True, False)
    assert got["prompt_ids"] == prompts.tokenize_fn(lm.tokenizer)(text)
    (want,) = generate(lm, [got["prompt_ids"]], GenerationConfig(max_new_tokens=6))
    assert lm.tokenizer.decode(got["tokens"], skip_special_tokens=True) == want and len(got["tokens"]) == 6
    printed = capsys.readouterr().out
    assert "context examples in the prompt: 2" in printed and f"CID {db.records[top2[0]].cid}" in printed
    assert main(["predict", "--model", str(tiny_base), "--database", str(db_path), "--task", "mol2cap", "--smiles",
                 smiles, "--max-new-tokens", "6", "--sample", "--seed", "5"]) == 0
    assert "sampling seed: 5" in capsys.readouterr().out
