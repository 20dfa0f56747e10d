"""eval.baselines: retrieval copy, the data-derived generation budget, cut answers."""

import numpy as np
import pytest

from icma_jax.data.records import load_split
from icma_jax.eval.baselines import answer_cut, retrieval_copy, token_budget
from icma_jax.eval.metrics import mol2cap_metrics
from icma_jax.retrieval import retrieve


def test_retrieval_copy_takes_the_best_ranked_answer():
    answers = ["a", "b", "c", "d"]
    assert retrieval_copy([np.array([2, 0]), np.array([], np.int64), np.array([3])], answers) == ["c", "", "d"]


def test_retrieval_copy_on_chebi20_scores_what_retrieval_alone_scores(shared_data):
    database = load_split(shared_data / "chebi20" / "validation.txt").select(range(1000))
    queries = load_split(shared_data / "chebi20" / "test.txt").select(range(100))
    nb = retrieve("mol2cap", "morgan", database, queries, k=3)
    preds = retrieval_copy(nb.positions(database), database.texts)
    assert preds[0] == database.records[int(nb.positions(database)[0][0])].text
    scores = mol2cap_metrics(queries.texts, preds)
    # nearest-molecule captions share much wording: far above nothing, far below a copy of the reference
    assert 0.15 < scores["bleu4"] < 0.6 and mol2cap_metrics(queries.texts, queries.texts)["bleu4"] == 1.0


def test_token_budget_is_the_percentile_plus_margin():
    lengths = list(range(1, 101))  # 99th percentile 99.01
    assert token_budget(lengths) == int(np.ceil(99.01 * 1.1))
    assert token_budget(lengths, percentile=50, margin=0.0) == 51
    assert token_budget([2, 3], minimum=8) == 8
    with pytest.raises(ValueError, match="no answers"):
        token_budget([])


def test_answer_cut_needs_no_eos_and_an_open_answer_line():
    assert not answer_cut("mol2cap", "Caption: The molecule is a base.", stopped=True)
    assert answer_cut("mol2cap", "Caption: The molecule is a conjugate", stopped=False)
    assert not answer_cut("mol2cap", "Caption: The molecule is a base.\n\nMolecule: CC", stopped=False)
    assert answer_cut("mol2cap", "The molecule is a base.\n\nMolecule: CC", stopped=False, first_line=False)
    assert answer_cut("cap2mol", "CC(=O)O", stopped=False)
