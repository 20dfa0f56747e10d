"""Per-example scores and word differences for the HTML report, computed with the metric suite's own code.

Mol2Cap: BLEU-4 of the one row (`text_metrics.corpus_bleu_score`, no smoothing, so 0 without a shared
4-gram) and METEOR (`text_metrics.meteor_scores`; their mean is the suite's METEOR) on the run's metric
tokenizer. Cap2Mol: validity, exact match (InChI) and count-Morgan Tanimoto as `mol_metrics` computes them
(the mean over rows where both molecules parse is the suite's `morgan_fts`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from rdkit.Chem import rdFingerprintGenerator

from icma_jax.data.molecules import inchi_of_mol
from icma_jax.eval.mol_metrics import MORGAN_RADIUS, fingerprint_similarities, parse_prediction, quiet_rdkit
from icma_jax.eval.text_metrics import corpus_bleu_score, meteor_scores
from icma_jax.eval.wordpiece import TextTokenizer, load_text_tokenizer
from icma_jax.progress import track

SCORE_KEYS = {"mol2cap": ("bleu4", "meteor"), "cap2mol": ("morgan", "exact", "valid")}
_WORD_KEY = re.compile(r"[^\w]+")


def caption_scores(refs: Sequence[str], preds: Sequence[str], tokenizer: str | TextTokenizer) -> list[dict]:
    """Per row `{"bleu4", "meteor"}` as the suite scores a one-row file."""
    tok = tokenizer if isinstance(tokenizer, TextTokenizer) else load_text_tokenizer(tokenizer)
    refs_tokens, hyps_tokens = tok.tokenize_batch(list(refs)), tok.tokenize_batch(list(preds))
    meteor = meteor_scores(refs_tokens, hyps_tokens)
    bleu = [corpus_bleu_score([r], [h], (0.25, 0.25, 0.25, 0.25))
            for r, h in track(zip(refs_tokens, hyps_tokens), "report: BLEU-4 per example", total=len(refs))]
    return [{"bleu4": b, "meteor": m} for b, m in zip(bleu, meteor)]


def molecule_scores(refs: Sequence[str], preds: Sequence[str]) -> list[dict]:
    """Per row `{"valid", "exact", "morgan"}`; `morgan` is None unless both molecules parse."""
    morgan = rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS)
    out = []
    with quiet_rdkit():
        for ref, pred in track(zip(refs, preds), "report: molecule scores", total=len(refs)):
            ref_mol, pred_mol = parse_prediction(ref), parse_prediction(pred)
            row = {"valid": float(pred_mol is not None), "exact": 0.0, "morgan": None}
            if ref_mol is not None and pred_mol is not None:
                ref_inchi = inchi_of_mol(ref_mol)
                row["exact"] = float(ref_inchi is not None and ref_inchi == inchi_of_mol(pred_mol))
                row["morgan"] = fingerprint_similarities(ref_mol, pred_mol, morgan)[2]
            out.append(row)
    return out


def _spans(flags: list[bool]) -> list[int]:
    """Flat [start, end, start, end, ...] of the runs of True in `flags`."""
    out, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out += [start, i]
            start = None
    return out


def word_diff(ref: str, pred: str) -> tuple[list[int], list[int]]:
    """Whitespace-word spans of `ref` and of `pred` that the other text does not share (case and
    punctuation ignored), as flat [start, end, ...] word-index pairs."""
    a, b = ref.split(), pred.split()
    key = lambda w: _WORD_KEY.sub("", w.lower()) or w  # noqa: E731
    matcher = difflib.SequenceMatcher(None, [key(w) for w in a], [key(w) for w in b], autojunk=False)
    in_a, in_b = [True] * len(a), [True] * len(b)
    for block in matcher.get_matching_blocks():
        in_a[block.a:block.a + block.size] = [False] * block.size
        in_b[block.b:block.b + block.size] = [False] * block.size
    return _spans(in_a), _spans(in_b)
