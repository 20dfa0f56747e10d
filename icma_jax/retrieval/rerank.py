"""Post-retrieval re-ranking (ICMA_SPEC §3): which n of a query's ranked candidates become context.

Strategies: `top` (ranks offset..offset+n), `random_walk` (walk down the list, skip each candidate
with probability p_skip, never skipping so far that too few remain), `bucket` (evenly spaced ranks).
`select` returns candidates in rank order (most similar first); Sequence Reversal (`prompt_order`)
is applied when the prompt is built, so the most similar example sits right before the query.
Random Walk is our definition of a paper stage absent from the released code (documented in the spec).
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

STRATEGIES = ("top", "random_walk", "bucket")


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """How many examples, chosen how; `seed` seeds `select_all` (one stream per query and epoch)."""

    n_examples: int = 2
    strategy: str = "top"
    p_skip: float = 0.0
    offset: int = 0
    reverse: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.n_examples < 0:
            raise ValueError(f"selection n_examples={self.n_examples} must be >= 0")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"selection strategy {self.strategy!r} is not one of {STRATEGIES}")
        if not 0.0 <= self.p_skip < 1.0:
            raise ValueError(f"selection p_skip={self.p_skip} must be in [0, 1)")
        if self.offset < 0:
            raise ValueError(f"selection offset={self.offset} must be >= 0")


def _random_walk(n_cand: int, n: int, p_skip: float, rng: np.random.Generator) -> list[int]:
    chosen: list[int] = []
    for rank in range(n_cand):
        need = n - len(chosen)
        if need == 0:
            break
        if n_cand - rank > need and rng.random() < p_skip:  # a skip must leave enough candidates
            continue
        chosen.append(rank)
    return chosen


def select(candidates: Sequence[int] | np.ndarray, config: SelectionConfig, rng: np.random.Generator | None = None
           ) -> np.ndarray:
    """The chosen candidates (a subsequence of `candidates`, rank order, most similar first).

    With fewer than offset + n candidates, all those after the offset are taken (fewer examples).
    """
    cand = np.asarray(candidates)
    n, offset = int(config.n_examples), int(config.offset)
    pool = cand[offset:]
    if n == 0 or pool.size == 0:
        return pool[:0]
    if config.strategy == "top" or (config.strategy == "random_walk" and config.p_skip == 0.0):
        return pool[:n]
    if config.strategy == "random_walk":
        if rng is None:
            raise ValueError("random_walk selection needs a seeded numpy Generator")
        return pool[_random_walk(len(pool), n, float(config.p_skip), rng)]
    if config.strategy == "bucket":
        step = max(1, len(pool) // n)  # ICMA_SPEC §3: floor((K - s) / n), guarded against 0
        return pool[::step][:n]
    raise ValueError(f"selection strategy {config.strategy!r} is not one of {STRATEGIES}")


def prompt_order(chosen: Sequence[int] | np.ndarray, reverse: bool) -> np.ndarray:
    """Sequence Reversal: e_n ... e_1 (most similar last, right before the query) when `reverse`."""
    chosen = np.asarray(chosen)
    return chosen[::-1] if reverse else chosen


def select_all(candidates: Sequence[np.ndarray], config: SelectionConfig, epoch: int = 0) -> list[np.ndarray]:
    """`select` for every query, in prompt order, seeded per (seed, epoch, query index): reproducible
    after a restart and independent of batch composition."""
    return [prompt_order(select(c, config, np.random.default_rng([config.seed, epoch, q])), config.reverse)
            for q, c in enumerate(candidates)]
