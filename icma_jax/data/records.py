"""Molecule–text TSV files (ChEBI-20, PubChem324k) as typed records, validated line by line.

Every problem names the file, the 1-based line and the field. `strict=True` raises on the first one;
the lenient default skips the row and counts it under its reason in the `LoadReport`, so nothing is
ever dropped silently. Duplicate CIDs are legal (PubChem324k has them) and are kept and reported.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib

import numpy as np

FIELDS = ("cid", "smiles", "text")
_HEADERS = {("cid", "smiles", "description")}  # compared case-insensitively


class DataFormatError(ValueError):
    """A malformed row: the message names file, line and field."""

    def __init__(self, path: pathlib.Path | str, line: int, field: str | None, reason: str, problem: str):
        self.path, self.line, self.field, self.reason = str(path), line, field, reason
        where = f"{path}:{line}" + (f" field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")


@dataclasses.dataclass(frozen=True)
class Record:
    """One molecule–text pair; `row` is its 0-based data-row index, `line` its 1-based file line."""

    row: int
    line: int
    cid: int
    smiles: str
    text: str


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What loading saw: rows read and kept, skipped rows per reason (with their lines), duplicate CIDs."""

    path: str
    n_rows: int
    n_kept: int
    skipped: dict[str, list[int]]
    duplicate_cids: dict[int, list[int]]

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def summary(self) -> str:
        parts = [f"{self.path}: {self.n_kept}/{self.n_rows} rows kept"]
        for reason, lines in sorted(self.skipped.items()):
            shown = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
            parts.append(f"skipped {len(lines)} ({reason}; lines {shown})")
        if self.duplicate_cids:
            n_rows = sum(len(v) for v in self.duplicate_cids.values())
            parts.append(f"{len(self.duplicate_cids)} duplicated CIDs over {n_rows} rows (kept)")
        return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class Split:
    """The records of one file, in file order, with column views for vectorised code."""

    name: str
    path: pathlib.Path
    records: tuple[Record, ...]
    report: LoadReport

    def __len__(self) -> int:
        return len(self.records)

    @property
    def cids(self) -> np.ndarray:
        return np.fromiter((r.cid for r in self.records), dtype=np.int64, count=len(self.records))

    @property
    def rows(self) -> np.ndarray:
        return np.fromiter((r.row for r in self.records), dtype=np.int64, count=len(self.records))

    @property
    def smiles(self) -> list[str]:
        return [r.smiles for r in self.records]

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.records]

    def select(self, indices) -> "Split":
        """A sub-split holding `records[i]` for each i (original row indices are kept)."""
        recs = tuple(self.records[int(i)] for i in indices)
        return dataclasses.replace(self, records=recs)


def _check_row(path, line_no: int, line: str) -> tuple[int, str, str]:
    cols = line.split("\t")
    if len(cols) != 3:
        raise DataFormatError(path, line_no, None, "wrong column count",
                              f"expected 3 tab-separated columns (CID, SMILES, description), got {len(cols)}")
    cid_s, smiles, text = cols
    try:
        cid = int(cid_s)
    except ValueError:
        raise DataFormatError(path, line_no, "cid", "non-integer CID", f"CID {cid_s!r} is not an integer") from None
    if not smiles.strip():
        raise DataFormatError(path, line_no, "smiles", "empty SMILES", "SMILES is empty")
    if not text.strip():
        raise DataFormatError(path, line_no, "text", "empty text", "description is empty")
    return cid, smiles, text


def load_split(path: str | pathlib.Path, *, strict: bool = False, name: str | None = None) -> Split:
    """Reads a `CID\\tSMILES\\tdescription` file (header `CID` or `cid`); strings are kept verbatim."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file")
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_no = raw.count(b"\n", 0, e.start) + 1
        raise DataFormatError(path, line_no, None, "bad encoding",
                              f"not valid UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})") from None
    if content.startswith("\ufeff"):
        content = content[1:]
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataFormatError(path, 1, None, "empty file", "file is empty (expected a header line)")
    header = tuple(c.strip().lower() for c in lines[0].rstrip("\r").split("\t"))
    if header not in _HEADERS:
        raise DataFormatError(path, 1, None, "bad header",
                              f"header {lines[0]!r} is not 'CID<TAB>SMILES<TAB>description'")

    records: list[Record] = []
    skipped: dict[str, list[int]] = collections.defaultdict(list)
    by_cid: dict[int, list[int]] = collections.defaultdict(list)
    for row, line in enumerate(lines[1:]):
        line_no = row + 2
        try:
            cid, smiles, text = _check_row(path, line_no, line.rstrip("\r"))
        except DataFormatError as e:
            if strict:
                raise
            skipped[e.reason].append(line_no)
            continue
        records.append(Record(row=row, line=line_no, cid=cid, smiles=smiles, text=text))
        by_cid[cid].append(row)
    dups = {cid: rows for cid, rows in by_cid.items() if len(rows) > 1}
    report = LoadReport(path=str(path), n_rows=len(lines) - 1, n_kept=len(records),
                        skipped=dict(skipped), duplicate_cids=dups)
    return Split(name=name or path.stem, path=path, records=tuple(records), report=report)
