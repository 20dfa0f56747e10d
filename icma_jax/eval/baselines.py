"""Honest baselines and generation budgets: what a tuned model's scores should be read against.

`retrieval_copy`: the top-ranked retrieved example's answer taken as the prediction (no model at all).
`token_budget`: a `max_new_tokens` that holds nearly every reference answer, derived from the data.
`answer_cut`: whether a generated answer stopped mid-way because the budget ran out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icma_jax.data.prompts import MARKERS


def retrieval_copy(neighbours: Sequence[np.ndarray], answers: Sequence[str]) -> list[str]:
    """Per query, `answers[neighbours[q][0]]` (its best-ranked database position); "" without neighbours."""
    return [answers[int(cand[0])] if len(cand) else "" for cand in neighbours]


def token_budget(answer_lengths: Sequence[int], percentile: float = 99.0, margin: float = 0.1, minimum: int = 8
                 ) -> int:
    """`ceil(p-th percentile of the answers' token counts × (1 + margin))`, at least `minimum`.

    The count should include the end-of-sequence token the model must emit to stop.
    """
    if len(answer_lengths) == 0:
        raise ValueError("no answers to derive max_new_tokens from")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    p = float(np.percentile(np.asarray(answer_lengths, np.float64), percentile))
    return max(minimum, int(np.ceil(p * (1.0 + margin))))


def answer_cut(task: str, generated: str, stopped: bool, first_line: bool = True) -> bool:
    """True when the answer in `generated` was cut by `max_new_tokens`: the model emitted no end-of-sequence
    token (`stopped` False) and, under the first-line rule, had not yet ended the answer's line either."""
    if stopped:
        return False
    if not first_line:
        return True
    marker = MARKERS[task]
    rest = generated.split(marker, 1)[1] if marker in generated else generated
    return "\n" not in rest.strip()
