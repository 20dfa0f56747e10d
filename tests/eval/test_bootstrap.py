"""eval.example_stats and eval.bootstrap: per-example statistics reproduce the suite's corpus metrics on any
resample, and the paired bootstrap draws the same examples for both systems."""

import numpy as np
import pytest

from icma_jax.data.records import load_split
from icma_jax.eval.bootstrap import paired_difference, resample_counts
from icma_jax.eval.example_stats import bleu_stats, cap2mol_stats, mean_stats, mol2cap_stats
from icma_jax.eval.metrics import cap2mol_metrics, mol2cap_metrics
from icma_jax.eval.text_metrics import corpus_bleu_score


def _systems(chebi_slice):
    """References and two systems' captions on the 40 test rows: neighbouring captions and cut references."""
    test = load_split(chebi_slice / "chebi20" / "test.txt")
    refs = list(test.texts)
    copy = refs[1:] + refs[:1]  # another molecule's caption: partial overlap
    cut = [" ".join(r.split()[: max(1, len(r.split()) // (2 + i % 3))]) for i, r in enumerate(refs)]
    cut[3] = ""  # an empty prediction scores 0 everywhere
    return test, refs, copy, cut


def test_caption_stats_equal_the_suite(chebi_slice):
    _, refs, copy, cut = _systems(chebi_slice)
    for preds in (copy, cut):
        stats, suite = mol2cap_stats(refs, preds), mol2cap_metrics(refs, preds)
        for key, s in stats.items():
            assert s.value() == pytest.approx(suite[key], abs=1e-12), key


def test_molecule_stats_equal_the_suite(chebi_slice):
    test = load_split(chebi_slice / "chebi20" / "test.txt")
    refs = list(test.smiles)
    preds = refs[:10] + [s[:-1] for s in refs[10:20]] + ["", "C1CC", "CCO"] + refs[23:30] + refs[30:][::-1]
    stats, suite = cap2mol_stats(refs, preds), cap2mol_metrics(refs, preds, fcd=False)
    for key, s in stats.items():
        assert s.value() == pytest.approx(suite[key], abs=1e-12), key


def test_bleu_of_every_resample_is_nltk_corpus_bleu_of_the_drawn_rows(chebi_slice):
    _, refs, _, cut = _systems(chebi_slice)
    r_tok, h_tok = [r.split() for r in refs], [h.split() for h in cut]
    counts = resample_counts(len(refs), resamples=12, seed=3)
    for order, weights in ((2, (0.5, 0.5)), (4, (0.25,) * 4)):
        stats = bleu_stats(r_tok, h_tok, order)
        got = stats.combine(counts @ stats.values_QxF)
        for row, value in zip(counts, got):
            drawn = np.repeat(np.arange(len(refs)), row.astype(int))
            assert value == pytest.approx(corpus_bleu_score([r_tok[i] for i in drawn], [h_tok[i] for i in drawn],
                                                            weights), abs=1e-12)
    # no unigram match at all: nltk returns 0, and so do we
    assert bleu_stats([["a", "b"]], [["c"]], 4).value() == 0.0


def test_pooling_two_seeds_is_the_metric_of_both_prediction_sets(chebi_slice):
    _, refs, copy, cut = _systems(chebi_slice)
    both = mol2cap_metrics(refs + refs, copy + cut)
    pooled = {k: s.pooled(t) for (k, s), t in zip(mol2cap_stats(refs, copy).items(), mol2cap_stats(refs, cut).values())}
    for key, s in pooled.items():
        assert s.value() == pytest.approx(both[key], abs=1e-12), key


def test_paired_bootstrap_draws_the_same_examples_for_both_systems():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.0, 1.0, 300)  # examples differ a lot from each other ...
    b = a + 0.02 + rng.normal(0.0, 0.01, 300)  # ... and b is a little better on every one of them
    counts = resample_counts(300, resamples=2000, seed=1)
    d = paired_difference(mean_stats(a), mean_stats(b), counts)
    assert d.value == pytest.approx(np.mean(b) - np.mean(a))
    # paired: the spread between examples cancels, so the interval is tight and excludes 0
    assert 0.0 < d.low < d.value < d.high < 0.025 and d.high - d.low < 0.004
    # the percentile interval of the per-resample differences, computed the long way
    diffs = [(row @ b - row @ a) / 300 for row in counts]
    assert (d.low, d.high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-12)
    same = paired_difference(mean_stats(a), mean_stats(a), counts)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)


def test_resample_counts_and_bad_input():
    counts = resample_counts(7, resamples=50, seed=0)
    assert counts.shape == (50, 7) and (counts.sum(1) == 7).all()
    assert (resample_counts(7, resamples=50, seed=0) == counts).all()
    with pytest.raises(ValueError, match="same examples"):
        paired_difference(mean_stats([1.0] * 7), mean_stats([1.0] * 6), counts)
    with pytest.raises(ValueError, match="at least one example"):
        resample_counts(0)
