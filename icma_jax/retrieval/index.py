"""Neighbour lists: per query row, database rows, CIDs and scores (best first); TSV and JSONL files.

The TSV is the original's layout (`query_cid<TAB>neighbour_cid<TAB>score`, best first, no header,
interoperable with the released ICMA files). Readers group lines by query, never by a fixed stride,
so a query with 9 or 16 lines is read as it is.
"""

import dataclasses
import json
import pathlib
from collections.abc import Sequence

import numpy as np

from icma_jax.data.records import Split


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """Retrieval result: `rows[q]`, `cids[q]`, `scores[q]` for query `q` (data row `query_rows[q]`).

    `rows` are data rows of the database file (-1 where only a CID is known and it is not in the
    database); `invalid_queries` are query rows that got no neighbours because their SMILES is invalid.
    """

    method: str
    query_rows: np.ndarray
    query_cids: np.ndarray
    rows: tuple[np.ndarray, ...]
    cids: tuple[np.ndarray, ...]
    scores: tuple[np.ndarray, ...]
    invalid_queries: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        n = len(self.query_rows)
        if not (len(self.query_cids) == len(self.rows) == len(self.cids) == len(self.scores) == n):
            raise ValueError("Neighbours: query_rows, query_cids, rows, cids and scores must have one entry per query")
        for q, (r, c, s) in enumerate(zip(self.rows, self.cids, self.scores)):
            if not (len(r) == len(c) == len(s)):
                raise ValueError(f"Neighbours: query {q} has {len(r)} rows, {len(c)} cids, {len(s)} scores")

    def __len__(self) -> int:
        return len(self.query_rows)

    def of_row(self, query_row: int) -> int:
        """Index q of the query with data row `query_row`."""
        hits = np.flatnonzero(self.query_rows == query_row)
        if hits.size == 0:
            raise KeyError(f"no neighbours for query row {query_row}")
        return int(hits[0])

    def positions(self, database: Split) -> list[np.ndarray]:
        """Neighbours as positions in `database.records` (what `rerank.select` and prompts index)."""
        pos_of_row = {int(r): i for i, r in enumerate(database.rows)}
        out = []
        for q, rows in enumerate(self.rows):
            missing = [int(r) for r in rows if int(r) not in pos_of_row]
            if missing:
                raise ValueError(f"neighbours of query row {int(self.query_rows[q])}: database rows {missing[:5]} "
                                 f"are not in {database.path}")
            out.append(np.asarray([pos_of_row[int(r)] for r in rows], np.int64))
        return out


def from_positions(method: str, queries: Split, database: Split, positions: Sequence[np.ndarray],
                   scores: Sequence[np.ndarray], invalid_queries: Sequence[int] = (), notes: Sequence[str] = ()
                   ) -> Neighbours:
    """Builds `Neighbours` from database positions (indices into `database.records`)."""
    db_rows, db_cids = database.rows, database.cids
    q_rows = queries.rows
    return Neighbours(method=method, query_rows=q_rows, query_cids=queries.cids,
                      rows=tuple(db_rows[np.asarray(p, np.int64)] for p in positions),
                      cids=tuple(db_cids[np.asarray(p, np.int64)] for p in positions),
                      scores=tuple(np.asarray(s, np.float64) for s in scores),
                      invalid_queries=tuple(int(q_rows[i]) for i in invalid_queries), notes=tuple(notes))


# ---- JSONL: one line per query ----
def write_neighbours_jsonl(path: str | pathlib.Path, nb: Neighbours) -> None:
    """One JSON object per query: query_row, query_cid, rows, cids, scores (best first), method."""
    invalid = set(nb.invalid_queries)
    with pathlib.Path(path).open("w") as f:
        for q in range(len(nb)):
            rec = {"query_row": int(nb.query_rows[q]), "query_cid": int(nb.query_cids[q]),
                   "rows": nb.rows[q].tolist(), "cids": nb.cids[q].tolist(), "scores": nb.scores[q].tolist(),
                   "method": nb.method}
            if int(nb.query_rows[q]) in invalid:
                rec["invalid_smiles"] = True
            f.write(json.dumps(rec) + "\n")


def read_neighbours_jsonl(path: str | pathlib.Path) -> Neighbours:
    """Reads `write_neighbours_jsonl` (or the training loop's) files; errors name file, line and field."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such neighbours file")
    q_rows, q_cids, rows, cids, scores, invalid, methods = [], [], [], [], [], [], set()
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
        for field in ("query_row", "query_cid", "rows", "cids", "scores"):
            if field not in rec:
                raise ValueError(f"{path}:{line_no}: field {field!r} is missing")
        try:
            r = np.asarray(rec["rows"], np.int64).reshape(-1)
            c = np.asarray(rec["cids"], np.int64).reshape(-1)
            s = np.asarray(rec["scores"], np.float64).reshape(-1)
            q_rows.append(int(rec["query_row"]))
            q_cids.append(int(rec["query_cid"]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}:{line_no}: bad value in rows/cids/scores/query fields ({e})") from None
        if not (len(r) == len(c) == len(s)):
            raise ValueError(f"{path}:{line_no}: fields rows, cids, scores have lengths {len(r)}, {len(c)}, {len(s)}")
        rows.append(r)
        cids.append(c)
        scores.append(s)
        methods.add(rec.get("method", "unknown"))
        if rec.get("invalid_smiles"):
            invalid.append(q_rows[-1])
    if len(set(q_rows)) != len(q_rows):
        dup = sorted({r for r in q_rows if q_rows.count(r) > 1})[:5]
        raise ValueError(f"{path}: query rows {dup} appear on more than one line")
    return Neighbours(method="+".join(sorted(methods)) or "unknown", query_rows=np.asarray(q_rows, np.int64),
                      query_cids=np.asarray(q_cids, np.int64), rows=tuple(rows), cids=tuple(cids),
                      scores=tuple(scores), invalid_queries=tuple(invalid))


# ---- TSV: the original layout ----
def write_neighbours_tsv(path: str | pathlib.Path, nb: Neighbours) -> None:
    """`query_cid<TAB>neighbour_cid<TAB>score` per neighbour, best first, queries in order, no header.

    A query without neighbours has no line (as in the released files); keep the JSONL for row identity.
    """
    with pathlib.Path(path).open("w") as f:
        for qc, cids, scores in zip(nb.query_cids, nb.cids, nb.scores):
            for c, s in zip(cids, scores):
                f.write(f"{int(qc)}\t{int(c)}\t{float(s)!r}\n")


def read_neighbours_tsv(path: str | pathlib.Path, queries: Split | None = None, database: Split | None = None
                        ) -> Neighbours:
    """Reads an original-layout file by query blocks (consecutive lines with one query CID and
    non-increasing scores), any length.

    With `queries`, the i-th block of CID c is the i-th query row with CID c (queries without a block get
    no neighbours; a block whose CID is not among the queries is an error). With `database`, neighbour
    CIDs are mapped to database rows (first row of a duplicated CID; -1 and a note when absent).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such neighbours file")
    blocks: list[tuple[int, int, list[int], list[float]]] = []  # (first line, query cid, cids, scores)
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        cols = line.rstrip("\r").split("\t")
        if len(cols) != 3:
            raise ValueError(f"{path}:{line_no}: expected 3 tab-separated fields (query_cid, neighbour_cid, score), "
                             f"got {len(cols)}")
        vals = []
        fields = (("query_cid", cols[0], int), ("neighbour_cid", cols[1], int), ("score", cols[2], float))
        for field, text, conv in fields:
            try:
                vals.append(conv(text))
            except ValueError:
                raise ValueError(f"{path}:{line_no}: field {field} {text!r} is not a number") from None
        qc, nc, sc = vals
        # A new query starts where the CID changes, or where the score rises (lists are best first):
        # the latter separates adjacent queries that share a CID.
        if not blocks or blocks[-1][1] != qc or sc > blocks[-1][3][-1]:
            blocks.append((line_no, qc, [], []))
        blocks[-1][2].append(nc)
        blocks[-1][3].append(sc)
    notes = []
    if queries is None:
        q_rows = np.full(len(blocks), -1, np.int64)
        q_cids = np.asarray([b[1] for b in blocks], np.int64)
        order = list(range(len(blocks)))
    else:
        rows_of_cid: dict[int, list[int]] = {}
        for i, c in enumerate(queries.cids):
            rows_of_cid.setdefault(int(c), []).append(i)
        used: dict[int, int] = {}
        pos_of_block = []
        for line_no, qc, _, _ in blocks:
            k = used.get(qc, 0)
            if qc not in rows_of_cid:
                raise ValueError(f"{path}:{line_no}: field query_cid {qc} is not a CID of {queries.path}")
            if k >= len(rows_of_cid[qc]):
                raise ValueError(f"{path}:{line_no}: query_cid {qc} has more blocks than rows in {queries.path}")
            pos_of_block.append(rows_of_cid[qc][k])
            used[qc] = k + 1
        block_of_pos = {p: b for b, p in enumerate(pos_of_block)}
        missing = [i for i in range(len(queries)) if i not in block_of_pos]
        if missing:
            notes.append(f"{len(missing)} queries have no lines in {path}")
        q_rows, q_cids = queries.rows, queries.cids
        order = [block_of_pos.get(i, -1) for i in range(len(queries))]
    row_of_cid: dict[int, int] = {}
    if database is not None:
        for r, c in zip(database.rows, database.cids):
            row_of_cid.setdefault(int(c), int(r))
    rows, cids, scores, absent = [], [], [], 0
    for b in order:
        c = np.asarray(blocks[b][2] if b >= 0 else [], np.int64)
        rows.append(np.asarray([row_of_cid.get(int(x), -1) for x in c], np.int64))
        absent += int((rows[-1] < 0).sum()) if database is not None else 0
        cids.append(c)
        scores.append(np.asarray(blocks[b][3] if b >= 0 else [], np.float64))
    if absent:
        notes.append(f"{absent} neighbour CIDs of {path} are not in {database.path} (row -1)")
    return Neighbours(method="tsv", query_rows=np.asarray(q_rows, np.int64), query_cids=np.asarray(q_cids, np.int64),
                      rows=tuple(rows), cids=tuple(cids), scores=tuple(scores), notes=tuple(notes))
