"""`retrieve` and `icma-jax retrieve`: self-exclusion, invalid SMILES, task/method checks, files written."""

import numpy as np
import pytest

from icma_jax.cli import main
from icma_jax.data.records import load_split
from icma_jax.retrieval import read_neighbours_jsonl, read_neighbours_tsv, retrieve


@pytest.fixture
def small(tmp_path, chebi):
    """40 ChEBI-20 validation rows plus a duplicate-CID row and an unparsable SMILES."""
    validation, _ = chebi
    recs = validation.records[:40]
    lines = [f"{r.cid}\t{r.smiles}\t{r.text}" for r in recs]
    lines.append(f"{recs[3].cid}\t{recs[3].smiles}\t{recs[3].text}")  # row 40 = a copy of row 3
    lines.append("999999\tC1CC(\tan impossible molecule")  # row 41: invalid SMILES
    p = tmp_path / "small.txt"
    p.write_text("CID\tSMILES\tdescription\n" + "\n".join(lines) + "\n")
    return load_split(p)


@pytest.mark.parametrize("task,method", [("cap2mol", "bm25"), ("mol2cap", "morgan"), ("mol2cap", "pathfp"),
                                         ("mol2cap", "random")])
def test_self_exclusion_by_row_and_cid(small, task, method):
    nb = retrieve(task, method, small, small, k=5, exclude_self=True)
    for q in range(len(small)):
        assert q not in nb.rows[q].tolist()  # own row
        assert small.cids[q] not in nb.cids[q].tolist()  # own CID (row 3 and its copy, row 40)
    if method in ("morgan", "pathfp"):  # the unparsable molecule is never a neighbour
        assert 41 not in np.concatenate(nb.rows).tolist()
    without = retrieve(task, method, small, small, k=5, exclude_self=False)
    if method in ("bm25", "morgan"):  # identical text / molecule: the query finds itself first
        assert without.rows[0][0] == 0 and without.rows[3].tolist()[:2] == [3, 40]


def test_invalid_query_smiles_get_no_neighbours_and_are_reported(small):
    nb = retrieve("mol2cap", "morgan", small, small, k=3)
    assert nb.invalid_queries == (41,) and len(nb.rows[41]) == 0
    assert any("1 query SMILES" in n and "lines [43]" in n for n in nb.notes)
    assert any("1 database SMILES" in n for n in nb.notes)
    bm = retrieve("cap2mol", "bm25", small, small, k=3)
    assert len(bm.rows[41]) == 3  # captions retrieve regardless of the SMILES


def test_method_task_and_argument_errors(small):
    with pytest.raises(ValueError, match="does not fit task 'cap2mol'"):
        retrieve("cap2mol", "morgan", small, small)
    with pytest.raises(ValueError, match="does not fit task 'mol2cap'"):
        retrieve("mol2cap", "bm25", small, small)
    with pytest.raises(ValueError, match="not one of"):
        retrieve("mol2cap", "ecfp", small, small)
    with pytest.raises(ValueError, match="needs an encoder"):
        retrieve("mol2cap", "gnn", small, small)
    with pytest.raises(ValueError, match="k must be"):
        retrieve("cap2mol", "bm25", small, small, k=0)


def test_random_is_seeded(small):
    a = retrieve("mol2cap", "random", small, small, k=4, seed=1)
    b = retrieve("mol2cap", "random", small, small, k=4, seed=1)
    c = retrieve("mol2cap", "random", small, small, k=4, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a.rows, b.rows))
    assert any(not np.array_equal(x, y) for x, y in zip(a.rows, c.rows))


def test_cli_writes_both_layouts(tmp_path, small, capsys):
    out = tmp_path / "nb" / "train_10_shot_mol2cap_morgan.txt"
    rc = main(["retrieve", "--task", "mol2cap", "--method", "morgan", "--database", str(small.path),
               "--queries", str(small.path), "--k", "4", "--out", str(out), "--exclude-self"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "do not parse" in printed and "42 queries" in printed
    tsv = read_neighbours_tsv(out, small, small)
    js = read_neighbours_jsonl(out.with_name(out.name + ".jsonl"))
    assert [len(r) for r in tsv.rows] == [4] * 41 + [0]
    assert js.invalid_queries == (41,)
    assert len(tsv.cids) == len(js.cids) == 42
    for q, (sa, sb, ca, cb) in enumerate(zip(tsv.scores, js.scores, tsv.cids, js.cids)):
        np.testing.assert_array_equal(sa, sb, err_msg=f"query {q}: scores")
        np.testing.assert_array_equal(ca, cb, err_msg=f"query {q}: neighbour CIDs")
    np.testing.assert_array_equal(tsv.query_cids, js.query_cids)
    rc = main(["retrieve", "--task", "cap2mol", "--method", "morgan", "--database", str(small.path),
               "--queries", str(small.path), "--out", str(out)])
    assert rc == 2 and "does not fit task" in capsys.readouterr().err
