"""BM25 parity with rank_bm25 0.2.2 BM25Okapi: identical neighbour order, identical scores, golden values."""

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from icma_jax.retrieval import bm25


def _reference_topk(ref: BM25Okapi, query: str, k: int):
    s = ref.get_scores(bm25.tokenize(query))
    order = np.argsort(-s, kind="stable")[:k]  # the spec's stable descending sort
    return order, s[order], s


def test_tokenize_matches_original_normalisation():
    assert bm25.tokenize(" 2-methyl,3-(ethyl)propan.ol ") == ["2", "methyl", "3", "ethyl", "propanol"]
    assert bm25.tokenize("(a)") == ["", "a", ""]  # leading/trailing spaces give empty-string tokens
    assert bm25.tokenize("a  b") == ["a", "b"]


def test_toy_corpus_scores_equal_rank_bm25_bitwise():
    corpus = ["the cat sat", "the dog sat down", "a cat-dog (hybrid)", "the the the", "x.y z", "the cat sat"]
    queries = ["the cat", "dog dog cat", "unknown words", "(x)", "the"]
    index = bm25.build_index(corpus)
    ref = BM25Okapi([bm25.tokenize(c) for c in corpus])
    for q in queries:
        fast = bm25.score_batch(index, [q])[0]  # the float32 candidate scorer: equal up to float32 rounding
        np.testing.assert_allclose(fast, ref.get_scores(bm25.tokenize(q)), rtol=1e-6, atol=1e-6)
    rows, scores = bm25.topk(index, queries, k=4)
    for q, r, s in zip(queries, rows, scores):
        order, s_ref, _ = _reference_topk(ref, q, 4)
        np.testing.assert_array_equal(r, order)
        np.testing.assert_array_equal(s, s_ref)  # exact floats, not merely close
    # Duplicate documents 0 and 5 tie: the lower row comes first, right before its twin.
    r0 = rows[0].tolist()
    assert r0.index(5) == r0.index(0) + 1 and scores[0][r0.index(0)] == scores[0][r0.index(5)]


@pytest.mark.slow
def test_pubchem_iupac_golden_and_parity(iupac):
    train, test = iupac
    index = bm25.build_index(train.texts)
    rows, scores = bm25.topk(index, test.texts, k=10)
    cids = train.cids
    # ICMA_SPEC §2.1 golden values.
    assert int(test.cids[0]) == 10012374 and int(test.cids[1]) == 100154
    assert cids[rows[0][:3]].tolist() == [389129, 56487, 64648]
    np.testing.assert_allclose(scores[0][:3], [14.806351012821487, 14.593292452091019, 14.547294886290006],
                               rtol=1e-12)
    assert cids[rows[1][:2]].tolist() == [53359577, 42608055]
    np.testing.assert_allclose(scores[1][:2], [38.77169970755589, 31.340524497704898], rtol=1e-12)
    ref = BM25Okapi([bm25.tokenize(t) for t in train.texts])
    for qi in range(0, len(test), 199):  # 10 queries spread over the file
        order, s_ref, _ = _reference_topk(ref, test.texts[qi], 10)
        np.testing.assert_array_equal(rows[qi], order)
        np.testing.assert_allclose(scores[qi], s_ref, rtol=1e-9, atol=0)


@pytest.mark.slow
def test_chebi_test_vs_validation_parity(chebi):
    validation, test = chebi
    index = bm25.build_index(validation.texts)
    picks = list(range(0, len(test), 330))
    rows, scores = bm25.topk(index, [test.texts[i] for i in picks], k=10)
    ref = BM25Okapi([bm25.tokenize(t) for t in validation.texts])
    for j, qi in enumerate(picks):
        order, s_ref, _ = _reference_topk(ref, test.texts[qi], 10)
        np.testing.assert_array_equal(rows[j], order)
        np.testing.assert_allclose(scores[j], s_ref, rtol=1e-9, atol=0)


def test_exclusions_and_short_corpus():
    corpus = ["a b", "a b", "a c", "d"]
    index = bm25.build_index(corpus)
    rows, scores = bm25.topk(index, ["a b", "a b"], k=10, excluded=[np.array([0]), np.array([0, 1])])
    assert 0 not in rows[0] and len(rows[0]) == 3  # only 4 documents, one excluded
    assert rows[1].tolist()[0] == 2 and len(rows[1]) == 2
    assert np.all(np.diff(scores[0]) <= 0)


def test_empty_database_is_an_error():
    with pytest.raises(ValueError, match="no documents"):
        bm25.build_index([])
