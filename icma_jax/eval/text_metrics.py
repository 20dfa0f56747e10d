"""Mol2Cap metrics exactly as MolT5's `text_translation_metrics.py`: BLEU-2/4, METEOR, ROUGE-1/2/L.

BLEU = nltk `corpus_bleu` (no smoothing) and METEOR = mean nltk `meteor_score` (WordNet 3.0, nltk's
defaults α=0.9, β=3, γ=0.5, Porter stemmer) over the caption tokens (`wordpiece.py`); ROUGE = mean
F-measure of `rouge_score.RougeScorer(['rouge1', 'rouge2', 'rougeL'])` (no stemmer) on the raw strings.
"""

import warnings
from collections.abc import Sequence

import numpy as np
from nltk.translate.bleu_score import corpus_bleu
from nltk.translate.meteor_score import meteor_score
from rouge_score import rouge_scorer

from icma_jax.eval.wordnet import load_wordnet
from icma_jax.eval.wordpiece import SCIBERT, TextTokenizer, load_text_tokenizer
from icma_jax.progress import track

MOL2CAP_KEYS = ("bleu2", "bleu4", "rouge1", "rouge2", "rougeL", "meteor")


def corpus_bleu_score(
    refs_tokens: Sequence[list[str]], hyps_tokens: Sequence[list[str]], weights: tuple[float, ...]
) -> float:
    """nltk `corpus_bleu` with one reference per row and no smoothing (0 when an n-gram order has no match)."""
    with warnings.catch_warnings():  # nltk warns "0 counts of n-gram overlaps" and returns 0, as MolT5 got
        warnings.simplefilter("ignore", UserWarning)
        return float(corpus_bleu([[r] for r in refs_tokens], list(hyps_tokens), weights=weights))


def meteor_scores(refs_tokens: Sequence[list[str]], hyps_tokens: Sequence[list[str]]) -> list[float]:
    """nltk `meteor_score([ref], hyp)` per row (0 for an empty hypothesis or reference)."""
    wordnet = load_wordnet()
    rows = track(zip(refs_tokens, hyps_tokens), "metrics: METEOR", total=len(refs_tokens), unit="row")
    return [float(meteor_score([r], h, wordnet=wordnet)) for r, h in rows]


def rouge_means(refs: Sequence[str], preds: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures over rows (`rouge_score` on raw strings)."""
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    scores = [scorer.score(ref, pred) for ref, pred in zip(refs, preds)]
    return {key: float(np.mean([s[key].fmeasure for s in scores])) for key in ("rouge1", "rouge2", "rougeL")}


def mol2cap_metrics(
    refs: Sequence[str], preds: Sequence[str], tokenizer: str | TextTokenizer = SCIBERT, max_length: int = 512
) -> dict:
    """MolT5's caption metrics: keys `bleu2, bleu4, rouge1, rouge2, rougeL, meteor, n, n_empty, tokenizer`.

    `tokenizer` is "scibert" (MolT5's protocol, the default), a vocab.txt path, an HF tokenizer folder
    or hub id, or a loaded `TextTokenizer`. Every row counts; an empty prediction scores 0.
    """
    refs, preds = list(refs), list(preds)
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} references but {len(preds)} predictions")
    if not refs:
        raise ValueError("no rows to evaluate")
    tok = tokenizer if isinstance(tokenizer, TextTokenizer) else load_text_tokenizer(tokenizer, max_length)
    refs_tokens = tok.tokenize_batch(refs)
    hyps_tokens = tok.tokenize_batch(preds)
    out = {
        "bleu2": corpus_bleu_score(refs_tokens, hyps_tokens, (0.5, 0.5)),
        "bleu4": corpus_bleu_score(refs_tokens, hyps_tokens, (0.25, 0.25, 0.25, 0.25)),
        **rouge_means(refs, preds),
        "meteor": float(np.mean(meteor_scores(refs_tokens, hyps_tokens))),
    }
    return {
        **{k: out[k] for k in MOL2CAP_KEYS},
        "n": len(refs),
        "n_empty": sum(not p.strip() for p in preds),
        "tokenizer": tok.name,
    }
