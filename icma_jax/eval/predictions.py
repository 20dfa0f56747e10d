"""Prediction files in MolT5's layout: TSV, header `SMILES|description \\t ground truth \\t output`.

Read as MolT5's scripts read them (`csv.DictReader(delimiter="\\t", quoting=csv.QUOTE_NONE)`: fields
split on tabs, quotes kept verbatim), but strictly: a wrong header, a row without exactly three fields,
a blank line or bytes that are not UTF-8 raise `PredictionFormatError` naming file and line. Mol2Cap
outputs starting with `"[CLS] "` lose that prefix, as in MolT5's `text_translation_metrics.py`; the
count is reported.
"""

import dataclasses
import os
import pathlib
import warnings
from collections.abc import Sequence

HEADERS = {
    "mol2cap": ("SMILES", "ground truth", "output"),
    "cap2mol": ("description", "ground truth", "output"),
}
CLS_PREFIX = "[CLS] "
_FIELD_BREAKS = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


class PredictionFormatError(ValueError):
    """A prediction file that is not in MolT5's layout; the message names file, line and field."""


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The rows of one prediction file (`lines[i]` is the 1-based file line of row i)."""

    path: str
    task: str  # "mol2cap" or "cap2mol"
    inputs: tuple[str, ...]
    refs: tuple[str, ...]
    outputs: tuple[str, ...]
    lines: tuple[int, ...]
    cls_stripped: int  # Mol2Cap outputs whose "[CLS] " prefix was removed

    def __len__(self) -> int:
        return len(self.refs)


def _decode(path: pathlib.Path, lineno: int, raw: bytes) -> str:
    """One line as UTF-8, or an error naming file, line and the offending byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PredictionFormatError(
            f"{path}:{lineno}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})"
        ) from None


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read a MolT5-layout prediction file; the task follows from the header."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prediction file not found")
    data = path.read_bytes()
    if not data.strip():
        raise PredictionFormatError(f"{path}: empty file (expected a header line and rows)")
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # the final newline ends the last row; it does not start another
    header = tuple(_decode(path, 1, raw_lines[0]).removeprefix("\ufeff").rstrip("\r").split("\t"))
    task = next((name for name, h in HEADERS.items() if h == header), None)
    if task is None:
        expected = " or ".join(repr("\t".join(h)) for h in HEADERS.values())
        raise PredictionFormatError(f"{path}:1: header is {chr(9).join(header)!r}, expected {expected}")
    inputs, refs, outputs, lines = [], [], [], []
    cls_stripped = 0
    for i, raw in enumerate(raw_lines[1:], start=2):
        text = _decode(path, i, raw).removesuffix("\r")
        fields = text.split("\t")
        if len(fields) != 3:
            what = "blank line" if not text else f"{len(fields)} tab-separated fields"
            raise PredictionFormatError(f"{path}:{i}: {what}, expected 3 ({', '.join(header)})")
        source, ref, out = fields
        if task == "mol2cap" and out.startswith(CLS_PREFIX):
            out = out[len(CLS_PREFIX):]
            cls_stripped += 1
        inputs.append(source)
        refs.append(ref)
        outputs.append(out)
        lines.append(i)
    if not refs:
        raise PredictionFormatError(f"{path}: header only, no rows")
    return Predictions(str(path), task, tuple(inputs), tuple(refs), tuple(outputs), tuple(lines), cls_stripped)


def write_predictions(
    path: str | os.PathLike, task: str, inputs: Sequence[str], refs: Sequence[str], outputs: Sequence[str]
) -> int:
    """Write rows in MolT5's layout; returns how many outputs had tabs/newlines turned into spaces.

    Inputs and references must not contain tabs or newlines (the layout cannot hold them). A generated
    output may: each such character becomes one space (a warning says how many rows), so the file's
    Levenshtein distances and wordpieces equal those of the in-memory strings.
    """
    if task not in HEADERS:
        raise ValueError(f"unknown task {task!r}: expected one of {sorted(HEADERS)}")
    if not len(inputs) == len(refs) == len(outputs):
        raise ValueError(f"{path}: {len(inputs)} inputs, {len(refs)} refs, {len(outputs)} outputs: lengths differ")
    names = HEADERS[task]
    rows, rewritten = [], 0
    for row, (source, ref, out) in enumerate(zip(inputs, refs, outputs)):
        for name, value in ((names[0], source), (names[1], ref)):
            if value != value.translate(_FIELD_BREAKS):
                raise ValueError(f"{path}: row {row} field '{name}' contains a tab or newline: {value[:80]!r}")
        clean = out.translate(_FIELD_BREAKS)
        rewritten += clean != out
        rows.append(f"{source}\t{ref}\t{clean}\n")
    if rewritten:
        warnings.warn(f"{path}: {rewritten} outputs had tabs/newlines replaced by spaces", stacklevel=2)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(names) + "\n")
        f.writelines(rows)
    os.replace(tmp, path)
    return rewritten
