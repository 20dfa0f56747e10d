"""Answer extraction from generated text (ICMA_SPEC §6)."""

from __future__ import annotations

from icma_jax.data.prompts import MARKERS


def extract_answer(task: str, generated: str, eos: str | None = None, first_line: bool = True) -> str:
    """The prediction in `generated` (the continuation only, never the prompt, whose examples hold markers).

    `first_line=False` is the original: cut at the first `eos`, take the text after the LAST
    `Caption:` / `Molecule:` marker (all of it when there is none), strip. `first_line=True` (default)
    takes the first line after the FIRST marker instead: every dataset answer is one line (the files are
    line-based TSV), and a model that does not stop tends to run on into a new example block whose own
    marker the original rule would pick up.
    """
    if task not in MARKERS:
        raise ValueError(f"unknown task {task!r}; expected one of {tuple(MARKERS)}")
    text = generated.split(eos, 1)[0] if eos else generated
    marker = MARKERS[task]
    if not first_line:
        return text.rsplit(marker, 1)[-1].strip()
    if marker in text:
        text = text.split(marker, 1)[1]
    return text.strip().split("\n", 1)[0].strip()
