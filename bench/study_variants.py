"""The study's variants: how each one's run config differs from ICMT's, and where its predictions come from.

Trained variants are runs of their own (one per seed); the untuned baselines are evaluated inside ICMT's run
of the first seed (`eval.in_context_baseline`, `eval.zero_shot_baseline`; retrieval copy always), on the same
test molecules and in-context prompts.
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of the study table."""

    name: str
    slug: str  # folder under DIR/runs (trained variants) or the run whose file it reads (baselines)
    trained: bool
    tag: str = "test"  # predictions_<tag>.tsv / eval_<tag>.json in the run folder


VARIANTS = {v.name: v for v in (
    Variant("ICMT", "icmt", True),
    Variant("ICMT, Morgan retrieval", "icmt_morgan", True),
    Variant("plain fine-tuning", "plain", True),
    Variant("ICMT, random examples", "icmt_random", True),
    Variant("in-context learning without tuning", "icmt", False, "test_in_context_untuned"),
    Variant("retrieval copy", "icmt", False, "test_retrieval_copy"),
    Variant("zero-shot", "icmt", False, "test_zero_shot"),
)}
REFERENCE = "ICMT"


def check_variants(names, task: str) -> list[Variant]:
    """The named variants, ICMT first; an unknown name or one that does not apply to `task` is an error."""
    names = list(names)
    for n in names:
        if n not in VARIANTS:
            raise ValueError(f"config field study.variants: unknown variant {n!r} (known: {', '.join(VARIANTS)})")
    if REFERENCE not in names:
        raise ValueError(f"config field study.variants must include {REFERENCE!r}: differences are taken against it")
    if task == "cap2mol" and "ICMT, Morgan retrieval" in names:
        raise ValueError("config field study.variants: 'ICMT, Morgan retrieval' does not apply to cap2mol "
                         "(the query is a caption; Morgan fingerprints would read the answer)")
    if len(set(names)) != len(names):
        raise ValueError(f"config field study.variants repeats a name: {names}")
    return [VARIANTS[REFERENCE]] + [VARIANTS[n] for n in names if n != REFERENCE]


def run_config(base: dict, variant: Variant, seed: int, *, encoder: pathlib.Path | None, baselines: set[str]) -> dict:
    """The run config (a plain dict) of a trained `variant` at `seed`; `baselines` are the untuned variants
    this run also evaluates (ICMT's first seed)."""
    if base["train"].get("pack_length"):
        raise ValueError("config field run.train.pack_length must be None in a study: packing changes the number of "
                         "training queries per step, and every variant must train on the same queries per step")
    c = copy.deepcopy(base)
    c["train"]["seed"] = seed
    task = c["data"]["task"]
    if variant.slug == "plain":  # the same queries and answers, no context examples
        c["prompt"]["zero_shot"], c["selection"]["n_examples"] = True, 0
    elif variant.slug == "icmt_morgan":
        c["retrieval"]["method"] = "morgan"
    elif variant.slug == "icmt_random":
        c["retrieval"]["method"] = "random"
    elif task == "mol2cap":  # ICMT: our GIN, trained within the study
        c["retrieval"]["method"], c["retrieval"]["encoder_path"] = "gnn", str(encoder)
    else:
        c["retrieval"]["method"] = "bm25"
    c["eval"]["in_context_baseline"] = "in-context learning without tuning" in baselines
    c["eval"]["zero_shot_baseline"] = "zero-shot" in baselines
    return c
