"""Neighbour files: TSV (original layout) and JSONL round trips, reading without a stride, bad input."""

import numpy as np
import pytest

from icma_jax.data.records import load_split
from icma_jax.retrieval.index import (Neighbours, from_positions, read_neighbours_jsonl, read_neighbours_tsv,
                                      write_neighbours_jsonl, write_neighbours_tsv)


def _split(tmp_path, name, rows):
    p = tmp_path / name
    p.write_text("CID\tSMILES\tdescription\n" + "".join(f"{c}\t{s}\t{t}\n" for c, s, t in rows))
    return load_split(p)


@pytest.fixture
def splits(tmp_path):
    db = _split(tmp_path, "db.txt", [(10, "C", "a"), (11, "CC", "b"), (12, "CCC", "c"), (11, "CCO", "d")])
    qs = _split(tmp_path, "q.txt", [(20, "N", "x"), (21, "O", "y"), (20, "S", "z")])  # CID 20 twice
    return db, qs


def _nb(db, qs):
    return from_positions("bm25", qs, db, [np.array([2, 0, 1]), np.array([1]), np.array([3, 2, 1, 0])],
                          [np.array([3.0, 2.5, 1 / 3]), np.array([0.1]), np.array([4.0, 3.0, 2.0, 1.0])])


def test_jsonl_round_trip_is_exact(tmp_path, splits):
    db, qs = splits
    nb = _nb(db, qs)
    write_neighbours_jsonl(tmp_path / "n.jsonl", nb)
    back = read_neighbours_jsonl(tmp_path / "n.jsonl")
    assert back.query_rows.tolist() == [0, 1, 2]
    for a, b in zip(nb.scores, back.scores):
        np.testing.assert_array_equal(a, b)
    assert [r.tolist() for r in back.rows] == [[2, 0, 1], [1], [3, 2, 1, 0]]
    assert [c.tolist() for c in back.cids] == [[12, 10, 11], [11], [11, 12, 11, 10]]
    assert [p.tolist() for p in back.positions(db)] == [[2, 0, 1], [1], [3, 2, 1, 0]]


def test_tsv_blocks_of_any_length_and_duplicate_query_cids(tmp_path, splits):
    db, qs = splits
    nb = _nb(db, qs)
    write_neighbours_tsv(tmp_path / "n.txt", nb)
    lines = (tmp_path / "n.txt").read_text().splitlines()
    assert lines[0] == "20\t12\t3.0" and len(lines) == 8  # 3 + 1 + 4 lines: no fixed stride
    back = read_neighbours_tsv(tmp_path / "n.txt", qs, db)
    assert [len(s) for s in back.scores] == [3, 1, 4]
    # The second block of CID 20 belongs to the second query row with CID 20 (row 2).
    assert back.query_rows.tolist() == [0, 1, 2] and back.cids[2].tolist() == [11, 12, 11, 10]
    np.testing.assert_array_equal(back.scores[0], nb.scores[0])  # repr floats: exact
    # CID 11 is duplicated in the database: mapped to its first row.
    assert back.rows[2].tolist() == [1, 2, 1, 0]


def test_tsv_adjacent_queries_sharing_a_cid_are_split_by_score(tmp_path):
    db = _split(tmp_path, "db.txt", [(10, "C", "a"), (11, "CC", "b")])
    qs = _split(tmp_path, "q.txt", [(30, "N", "x"), (30, "O", "y")])  # adjacent rows, one CID
    (tmp_path / "n.txt").write_text("30\t10\t2.0\n30\t11\t1.0\n30\t11\t5.0\n30\t10\t0.5\n")
    back = read_neighbours_tsv(tmp_path / "n.txt", qs, db)
    assert [c.tolist() for c in back.cids] == [[10, 11], [11, 10]]


def test_tsv_reader_without_splits_and_missing_queries(tmp_path, splits):
    db, qs = splits
    (tmp_path / "n.txt").write_text("21\t10\t1.5\n21\t99\t1.0\n")
    back = read_neighbours_tsv(tmp_path / "n.txt", qs, db)
    assert [len(r) for r in back.rows] == [0, 2, 0]
    assert back.rows[1].tolist() == [0, -1]
    assert any("no lines" in n for n in back.notes) and any("not in" in n for n in back.notes)
    plain = read_neighbours_tsv(tmp_path / "n.txt")
    assert plain.query_cids.tolist() == [21] and plain.cids[0].tolist() == [10, 99]


@pytest.mark.parametrize("content,match", [
    ("20\t10\n", r"n\.txt:1: expected 3 tab-separated fields"),
    ("20\t10\t1.0\n20\tx\t1.0\n", r"n\.txt:2: field neighbour_cid 'x' is not a number"),
    ("20\t10\tnan?\n", r"n\.txt:1: field score"),
    ("77\t10\t1.0\n", r"n\.txt:1: field query_cid 77 is not a CID"),
    ("21\t10\t1.0\n20\t10\t1.0\n21\t11\t1.0\n", r"n\.txt:3: query_cid 21 has more blocks than rows"),
])
def test_tsv_bad_input_names_line_and_field(tmp_path, splits, content, match):
    db, qs = splits
    (tmp_path / "n.txt").write_text(content)
    with pytest.raises(ValueError, match=match):
        read_neighbours_tsv(tmp_path / "n.txt", qs, db)


@pytest.mark.parametrize("content,match", [
    ('{"query_row": 0}\n', r"n\.jsonl:1: field 'query_cid' is missing"),
    ('{"query_row": 0, "query_cid": 1, "rows": [1], "cids": [1, 2], "scores": [1]}\n', r"n\.jsonl:1: fields rows"),
    ("not json\n", r"n\.jsonl:1: not valid JSON"),
    ('{"query_row": 0, "query_cid": 1, "rows": [], "cids": [], "scores": []}\n' * 2, r"query rows \[0\] appear"),
])
def test_jsonl_bad_input(tmp_path, content, match):
    (tmp_path / "n.jsonl").write_text(content)
    with pytest.raises(ValueError, match=match):
        read_neighbours_jsonl(tmp_path / "n.jsonl")


def test_neighbours_shape_checks_and_positions_errors(splits):
    db, qs = splits
    with pytest.raises(ValueError, match="query 0 has 2 rows, 1 cids"):
        Neighbours("x", np.array([0]), np.array([1]), (np.array([1, 2]),), (np.array([1]),), (np.array([1.0]),))
    nb = Neighbours("x", np.array([0]), np.array([1]), (np.array([7]),), (np.array([1]),), (np.array([1.0]),))
    with pytest.raises(ValueError, match=r"database rows \[7\] are not in"):
        nb.positions(db)
    assert nb.of_row(0) == 0
    with pytest.raises(KeyError):
        nb.of_row(5)
