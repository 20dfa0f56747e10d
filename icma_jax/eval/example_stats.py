"""Per-example sufficient statistics of the MolT5 metrics: every corpus metric as a function of column sums.

A metric over Q examples is `combine(values_QxF.sum(0))`: corpus BLEU from the summed clipped n-gram
matches, n-gram counts and lengths (nltk `corpus_bleu`, no smoothing, exactly), a mean from (sum of the
scores, count), a similarity averaged over the rows where both molecules parse from (sum, rows). Weighted
sums are therefore resamples (`eval.bootstrap`), and adding two systems' statistics row by row pools their
predictions of the same molecules (e.g. two training seeds) into one corpus.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence

import Levenshtein
import numpy as np
from rouge_score import rouge_scorer

from icma_jax.data.molecules import inchi_of_mol
from icma_jax.eval.mol_metrics import MORGAN_RADIUS, fingerprint_similarities, parse_prediction, quiet_rdkit
from icma_jax.eval.text_metrics import meteor_scores
from icma_jax.eval.wordpiece import TextTokenizer, load_text_tokenizer

_LOG_TINY = math.log(sys.float_info.min)  # nltk's method0 puts float_info.min where an order has no match


@dataclasses.dataclass(frozen=True)
class MetricStats:
    """One metric's per-example statistics: the metric of any weighting is `combine(weights @ values_QxF)`."""

    values_QxF: np.ndarray
    combine: Callable[[np.ndarray], np.ndarray]  # column sums ...xF -> metric ...

    def value(self) -> float:
        """The metric over all examples (equal to the suite's)."""
        return float(self.combine(self.values_QxF.sum(0)))

    def pooled(self, other: MetricStats) -> MetricStats:
        """Both systems' predictions of the same examples as one corpus (row i of each stays together)."""
        if self.values_QxF.shape != other.values_QxF.shape:
            raise ValueError(f"cannot pool statistics of shapes {self.values_QxF.shape} and {other.values_QxF.shape}")
        return MetricStats(self.values_QxF + other.values_QxF, self.combine)


def _ratio(sums_xF: np.ndarray) -> np.ndarray:
    """Column 0 / column 1 (NaN where nothing was counted)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums_xF[..., 0] / sums_xF[..., 1]


def mean_stats(scores: Sequence[float | None]) -> MetricStats:
    """A mean over the examples whose score is not None (the others count nowhere)."""
    v = np.array([[0.0, 0.0] if s is None else [float(s), 1.0] for s in scores], np.float64).reshape(-1, 2)
    return MetricStats(v, _ratio)


def bleu_stats(refs_tokens: Sequence[Sequence[str]], hyps_tokens: Sequence[Sequence[str]], max_order: int
               ) -> MetricStats:
    """Columns: clipped matches and hypothesis n-grams (at least 1, as nltk) for n = 1..max_order, then
    hypothesis and reference lengths; `combine` = nltk `corpus_bleu` with uniform weights, no smoothing."""
    rows = []
    for ref, hyp in zip(refs_tokens, hyps_tokens, strict=True):
        ref, hyp = list(ref), list(hyp)
        num, den = [], []
        for n in range(1, max_order + 1):
            h = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
            r = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
            num.append(sum(min(c, r[g]) for g, c in h.items()))
            den.append(max(1, sum(h.values())))
        rows.append(num + den + [len(hyp), len(ref)])
    values = np.asarray(rows, np.float64).reshape(-1, 2 * max_order + 2)

    def combine(s_xF: np.ndarray) -> np.ndarray:
        num, den = s_xF[..., :max_order], s_xF[..., max_order:2 * max_order]
        hyp, ref = s_xF[..., -2], s_xF[..., -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = np.where(num > 0, np.log(np.maximum(num, 1e-300) / den), _LOG_TINY)
            bp = np.where(hyp > ref, 1.0, np.where(hyp == 0, 0.0, np.exp(1.0 - ref / np.maximum(hyp, 1e-300))))
            score = bp * np.exp(log_p.mean(-1))
        return np.where(num[..., 0] == 0, 0.0, score)

    return MetricStats(values, combine)


def mol2cap_stats(refs: Sequence[str], preds: Sequence[str], tokenizer: str | TextTokenizer = "scibert"
                  ) -> dict[str, MetricStats]:
    """Statistics of `text_metrics.mol2cap_metrics`' keys (bleu2, bleu4, rouge1, rouge2, rougeL, meteor)."""
    tok = tokenizer if isinstance(tokenizer, TextTokenizer) else load_text_tokenizer(tokenizer)
    refs_tokens, hyps_tokens = tok.tokenize_batch(list(refs)), tok.tokenize_batch(list(preds))
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    rouge = [scorer.score(r, p) for r, p in zip(refs, preds, strict=True)]
    return {
        "bleu2": bleu_stats(refs_tokens, hyps_tokens, 2),
        "bleu4": bleu_stats(refs_tokens, hyps_tokens, 4),
        **{k: mean_stats([s[k].fmeasure for s in rouge]) for k in ("rouge1", "rouge2", "rougeL")},
        "meteor": mean_stats(meteor_scores(refs_tokens, hyps_tokens)),
    }


def cap2mol_stats(refs: Sequence[str], preds: Sequence[str]) -> dict[str, MetricStats]:
    """Statistics of `mol_metrics.cap2mol_metrics`' keys but FCD (a distance between two sets, no per-row form)."""
    from rdkit.Chem import rdFingerprintGenerator

    morgan = rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS)
    exact, valid, sims = [], [], []
    with quiet_rdkit():
        for ref, pred in zip(refs, preds, strict=True):
            ref_mol, pred_mol = parse_prediction(ref), parse_prediction(pred)
            valid.append(float(pred_mol is not None))
            both = ref_mol is not None and pred_mol is not None
            ref_inchi = inchi_of_mol(ref_mol) if both else None
            exact.append(float(both and ref_inchi is not None and ref_inchi == inchi_of_mol(pred_mol)))
            sims.append(fingerprint_similarities(ref_mol, pred_mol, morgan) if both else None)
    return {
        "bleu": bleu_stats([list(r) for r in refs], [list(p) for p in preds], 4),
        "exact_match": mean_stats(exact),
        "levenshtein": mean_stats([Levenshtein.distance(p, r) for r, p in zip(refs, preds)]),
        "validity": mean_stats(valid),
        **{k: mean_stats([None if s is None else s[i] for s in sims])
           for i, k in enumerate(("maccs_fts", "rdk_fts", "morgan_fts"))},
    }


def example_stats(task: str, refs: Sequence[str], preds: Sequence[str], tokenizer: str | TextTokenizer = "scibert"
                  ) -> dict[str, MetricStats]:
    """`mol2cap_stats` or `cap2mol_stats` by task."""
    if task == "mol2cap":
        return mol2cap_stats(refs, preds, tokenizer)
    if task == "cap2mol":
        return cap2mol_stats(refs, preds)
    raise ValueError(f"unknown task {task!r} (mol2cap | cap2mol)")
