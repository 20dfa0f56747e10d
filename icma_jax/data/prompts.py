"""ICMA prompt templates (byte-exact, ICMA_SPEC §4), tokenisation, label masks and truncation.

Examples are passed in retrieval order (most similar first); `reverse=True` (Sequence Reversal, the
original) writes them least-similar first so the most similar one sits right before the query. Two
truncation policies: `drop_examples` drops the least similar examples until the whole sequence fits
`cutoff_len` (so the query and answer survive), `right` cuts the token sequence at `cutoff_len` like
the original. Every cut is counted in a `PromptReport`; nothing is shortened silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

IGNORE = -100  # label id that carries no loss

# Marker that starts the answer, per task (ICMA_SPEC §4, §6).
MARKERS = {"mol2cap": "Caption:", "cap2mol": "Molecule:"}


class Pair(NamedTuple):
    """One molecule–text pair: `smiles` and its caption (or IUPAC name)."""

    smiles: str
    text: str


def example_block(task: str, ex: Pair) -> str:
    """The context block of one example (ends with a blank line)."""
    if task == "mol2cap":
        return f"Generate a caption for the molecule: {ex.smiles}\nCaption: {ex.text}\n\n"
    if task == "cap2mol":
        return f"Generate a molecule for the caption: {ex.text}\nMolecule: {ex.smiles}\n\n"
    raise ValueError(f"unknown task {task!r}; expected one of {tuple(MARKERS)}")


def query_line(task: str, query: Pair, zero_shot: bool = False) -> str:
    """The query instruction (in-context or zero-shot form)."""
    if task == "mol2cap":
        if zero_shot:
            return f"Generate a caption for the molecule: {query.smiles}\n"
        return ("Based on the above examples, analyse the similarities and differences between the examples "
                f"and finally generate a caption for the molecule: {query.smiles}. \n")
    if task == "cap2mol":
        if zero_shot:
            return f"Generate a molecule that: {query.text}\n"
        return ("Based on the above examples, analyse the similarities and differences between the examples "
                f"and finally generate a molecule for the caption: {query.text}\n")
    raise ValueError(f"unknown task {task!r}; expected one of {tuple(MARKERS)}")


def answer_text(task: str, query: Pair) -> str:
    """The target the model learns to produce after the prompt (without EOS)."""
    return f"{MARKERS[task]} {query.text if task == 'mol2cap' else query.smiles}"


def raw_prompt(task: str, query: Pair, examples: Sequence[Pair], reverse: bool = True,
               zero_shot: bool = False) -> str:
    """`examples (reversed if reverse) + query`; `examples` are given most similar first."""
    if zero_shot and examples:
        raise ValueError("zero-shot prompts take no context examples")
    ordered = list(examples)[::-1] if reverse else list(examples)
    return "".join(example_block(task, ex) for ex in ordered) + query_line(task, query, zero_shot)


def source_text(task: str, query: Pair, examples: Sequence[Pair], reverse: bool = True,
                zero_shot: bool = False) -> str:
    """The model input at inference: `raw.strip()`."""
    return raw_prompt(task, query, examples, reverse, zero_shot).strip()


def full_text(task: str, query: Pair, examples: Sequence[Pair], eos: str, reverse: bool = True,
              zero_shot: bool = False) -> str:
    """The training text: `(raw + answer + EOS).strip()`."""
    return (raw_prompt(task, query, examples, reverse, zero_shot) + answer_text(task, query) + eos).strip()


@dataclasses.dataclass
class PromptReport:
    """Counts of everything truncation did to a set of prompts (mutable accumulator)."""

    prompts: int = 0
    examples_requested: int = 0
    examples_dropped: int = 0  # context examples removed by drop_examples
    prompts_with_drops: int = 0
    truncated: int = 0  # sequences cut at the length limit
    answer_cut: int = 0  # training sequences whose answer lost tokens (EOS included)
    prompt_cut: int = 0  # sequences whose query (prompt part) itself did not fit

    def add(self, other: PromptReport) -> None:
        """Accumulates `other` into this report."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def summary(self) -> str:
        """One line for logs."""
        return (f"{self.prompts} prompts: {self.examples_dropped}/{self.examples_requested} context examples "
                f"dropped in {self.prompts_with_drops} prompts, {self.truncated} truncated, "
                f"{self.answer_cut} with the answer cut, {self.prompt_cut} with the query cut")


class Encoded(NamedTuple):
    """One tokenised training sequence: ids, aligned labels (-100 = no loss), examples kept."""

    ids: np.ndarray  # int32 [L]
    labels: np.ndarray  # int32 [L]
    n_examples: int


Tokenize = Callable[[str], list[int]]


def tokenize_fn(tokenizer) -> Tokenize:
    """`text -> ids` for a Hugging Face tokenizer (special tokens added as the tokenizer defines)."""
    return lambda text: list(tokenizer(text)["input_ids"])


def _right_encode(tokenize: Tokenize, source: str, full: str, eos_id: int, cutoff_len: int,
                  train_on_inputs: bool) -> tuple[np.ndarray, np.ndarray, PromptReport]:
    """The original's tokenisation: cut at `cutoff_len`, add EOS if room, mask the source's tokens."""
    report = PromptReport(prompts=1)
    full_ids = tokenize(full)
    ids = full_ids[:cutoff_len]
    if ids[-1] != eos_id and len(ids) < cutoff_len:
        ids.append(eos_id)
    n_source = len(tokenize(source))
    if len(full_ids) > cutoff_len:
        report.truncated = 1
        report.answer_cut = 1
        report.prompt_cut = int(n_source >= cutoff_len)
    labels = list(ids) if train_on_inputs else [IGNORE] * min(n_source, len(ids)) + ids[n_source:]
    return np.asarray(ids, np.int32), np.asarray(labels, np.int32), report


def encode_train(task: str, query: Pair, examples: Sequence[Pair], tokenizer, *, cutoff_len: int,
                 truncation: str = "drop_examples", train_on_inputs: bool = False, reverse: bool = True,
                 zero_shot: bool = False, tokenize: Tokenize | None = None) -> tuple[Encoded, PromptReport]:
    """Tokenised training sequence for `query` with up to `len(examples)` context examples."""
    tokenize = tokenize or tokenize_fn(tokenizer)
    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    if eos is None or eos_id is None:
        raise ValueError("the tokenizer has no EOS token; ICMA's training text ends with it")
    if truncation not in ("drop_examples", "right"):
        raise ValueError(f"unknown truncation policy {truncation!r}; expected 'drop_examples' or 'right'")
    n = len(examples)
    keep_counts = range(n, -1, -1) if truncation == "drop_examples" else [n]
    for m in keep_counts:
        kept = list(examples)[:m]
        full = full_text(task, query, kept, eos, reverse, zero_shot)
        source = source_text(task, query, kept, reverse, zero_shot)
        if len(tokenize(full)) <= cutoff_len or m == keep_counts[-1]:
            break
    ids, labels, report = _right_encode(tokenize, source, full, eos_id, cutoff_len, train_on_inputs)
    report.examples_requested = n
    report.examples_dropped = n - m
    report.prompts_with_drops = int(m < n)
    return Encoded(ids, labels, m), report


def encode_source(task: str, query: Pair, examples: Sequence[Pair], tokenizer, *, max_len: int,
                  reverse: bool = True, zero_shot: bool = False,
                  tokenize: Tokenize | None = None) -> tuple[np.ndarray, int, PromptReport]:
    """Inference prompt ids (dropping least similar examples until it fits `max_len`), examples kept.

    If even the bare query is too long its first tokens are cut (counted as `prompt_cut`): generation
    must continue from the end of the query.
    """
    tokenize = tokenize or tokenize_fn(tokenizer)
    report = PromptReport(prompts=1, examples_requested=len(examples))
    for m in range(len(examples), -1, -1):
        ids = tokenize(source_text(task, query, list(examples)[:m], reverse, zero_shot))
        if len(ids) <= max_len:
            break
    report.examples_dropped = len(examples) - m
    report.prompts_with_drops = int(m < len(examples))
    if len(ids) > max_len:
        ids = ids[len(ids) - max_len:]
        report.truncated = report.prompt_cut = 1
    return np.asarray(ids, np.int32), m, report
