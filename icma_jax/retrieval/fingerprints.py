"""Fingerprint retrieval: RDKit path (`pathfp`, the original's "morgan") and Morgan radius-2 (`morgan`).

Fingerprints are computed once and packed into uint64 words; Tanimoto for all queries x database comes
from exact integer intersection counts (frequent bits by a float32 BLAS product, rare bits by a sparse
product: both exact for counts < 2^24), then c / (a + b - c) in float64 as RDKit computes it.
`pathfp` keeps RDKit's density folding (64..2048 bits); two fingerprints of different lengths are
compared after folding the longer to the shorter, like `DataStructs.FingerprintSimilarity`.
Dims (package legend): G molecules (database rows), F fingerprint bits, Q queries, C candidate (query, row) pairs;
`words_Gx32` packs each molecule's up to 2048 bits into 32 uint64 words. A selection or reordering keeps its
letter: a `_Level` holds some rows (`pos_G`) and splits the bits (`dense_FxG`, `rare_FxG`), `perm_G` orders rows.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from icma_jax.data.molecules import try_parse
from icma_jax.progress import Stage, track
from icma_jax.retrieval.topk import rank_pairs, topk_candidates

METHODS = ("pathfp", "morgan")
MAX_BITS = 2048
# FingerprintMols.FingerprintMol defaults: minPath 1, maxPath 7, 2048 bits, 2 bits/hash, no Hs,
# folded while density < 0.3 down to at least 64 bits.
PATHFP_ARGS = dict(minPath=1, maxPath=7, fpSize=2048, nBitsPerHash=2, useHs=False, tgtDensity=0.3, minSize=64)
MORGAN_RADIUS, MORGAN_BITS = 2, 2048


@dataclasses.dataclass(frozen=True)
class FingerprintSet:
    """Packed fingerprints of G molecules; `n_bits_G` is each one's length (0 where the SMILES is invalid)."""

    method: str
    words_Gx32: np.ndarray
    n_bits_G: np.ndarray
    invalid: tuple[int, ...]

    def __len__(self) -> int:
        return int(self.n_bits_G.shape[0])

    @property
    def valid_G(self) -> np.ndarray:
        return self.n_bits_G > 0


def rdkit_fingerprint(mol: Chem.Mol, method: str) -> DataStructs.ExplicitBitVect:
    """The RDKit bit vector `method` uses for one molecule."""
    if method == "pathfp":
        return Chem.RDKFingerprint(mol, **PATHFP_ARGS)
    if method == "morgan":
        return rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS).GetFingerprint(mol)
    raise ValueError(f"fingerprint method {method!r} is not one of {METHODS}")


def _pack(fp: DataStructs.ExplicitBitVect) -> np.ndarray:
    bits = np.zeros(MAX_BITS, np.uint8)
    bits[list(fp.GetOnBits())] = 1
    return np.packbits(bits, bitorder="little").view(np.uint64)


def compute(smiles: Sequence[str], method: str) -> FingerprintSet:
    """Fingerprints of every SMILES; unparsable ones are recorded in `invalid` (never dropped)."""
    if method not in METHODS:
        raise ValueError(f"fingerprint method {method!r} is not one of {METHODS}")
    words = np.zeros((len(smiles), MAX_BITS // 64), np.uint64)
    n_bits = np.zeros(len(smiles), np.int64)
    invalid = []
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS)
    for i, s in enumerate(track(smiles, f"featurisation: {method} fingerprints", unit="mol")):
        mol = try_parse(s)
        if mol is None:
            invalid.append(i)
            continue
        fp = Chem.RDKFingerprint(mol, **PATHFP_ARGS) if method == "pathfp" else gen.GetFingerprint(mol)
        words[i] = _pack(fp)
        n_bits[i] = fp.GetNumBits()
    return FingerprintSet(method=method, words_Gx32=words, n_bits_G=n_bits, invalid=tuple(invalid))


def fold_words(words: np.ndarray, n_bits: int, to_bits: int) -> np.ndarray:
    """RDKit's folding (bit i -> i mod to_bits) of `n_bits`-long packed fingerprints."""
    w_from, w_to = n_bits // 64, to_bits // 64
    return np.bitwise_or.reduce(words[:, :w_from].reshape(len(words), w_from // w_to, w_to), axis=1)


def _unpack(words: np.ndarray) -> np.ndarray:
    return np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")


@dataclasses.dataclass(frozen=True)
class _Level:
    """Database fingerprints of at least `n_bits` bits folded to `n_bits`, ready for exact products."""

    n_bits: int
    pos_G: np.ndarray  # database positions held
    native_G: np.ndarray  # their own lengths
    popcount_G: np.ndarray
    dense_cols: np.ndarray  # frequent bits, scored by float32 BLAS
    dense_FxG: np.ndarray
    rare_cols: np.ndarray
    rare_FxG: sp.csr_matrix


@dataclasses.dataclass(frozen=True)
class DatabaseIndex:
    """A fingerprint database prepared once for many query batches.

    Valid rows are ordered by (length, row) in `perm_G`; for every length L up to the longest,
    `at_least[L]` holds the rows of length >= L folded to L (a suffix of `perm_G`, from `start[L]`) and
    `exactly[L]` those of length L, so every (query length, database length) block is a contiguous slice.
    """

    fps: FingerprintSet
    perm_G: np.ndarray
    start: dict[int, int]
    at_least: dict[int, _Level]
    exactly: dict[int, _Level]


def _level(database: FingerprintSet, pos: np.ndarray, size: int, dense_min_df: float) -> _Level:
    bits_GxF = np.zeros((len(pos), size), np.uint8)
    for n in set(database.n_bits_G[pos].tolist()):
        m = database.n_bits_G[pos] == n
        bits_GxF[m] = _unpack(fold_words(database.words_Gx32[pos[m]], n, size))
    df_F = bits_GxF.sum(axis=0, dtype=np.int64)
    dense = df_F >= dense_min_df * max(len(pos), 1)
    rare = np.flatnonzero(~dense & (df_F > 0))
    return _Level(n_bits=size, pos_G=pos, native_G=database.n_bits_G[pos],
                  popcount_G=bits_GxF.sum(axis=1, dtype=np.int64), dense_cols=np.flatnonzero(dense),
                  dense_FxG=np.ascontiguousarray(bits_GxF[:, dense].T, dtype=np.float32),
                  rare_cols=rare, rare_FxG=sp.csr_matrix(bits_GxF[:, rare].T, dtype=np.float32))


def build_index(database: FingerprintSet, dense_min_df: float = 1 / 32) -> DatabaseIndex:
    """Orders, folds and unpacks the database once per fingerprint length."""
    valid = np.flatnonzero(database.valid_G)
    perm = valid[np.argsort(database.n_bits_G[valid], kind="stable")]
    lengths = database.n_bits_G[perm]
    longest = int(lengths.max()) if len(perm) else 0
    sizes = [n for n in (64, 128, 256, 512, 1024, 2048) if n <= longest]
    start = {n: int(np.searchsorted(lengths, n)) for n in sizes}
    return DatabaseIndex(
        fps=database, perm_G=perm, start=start,
        at_least={n: _level(database, perm[start[n]:], n, dense_min_df) for n in sizes},
        exactly={n: _level(database, perm[lengths == n], n, dense_min_df) for n in sizes if (lengths == n).any()})


def _intersections(bits_QxF: np.ndarray, level: _Level) -> np.ndarray:
    """Exact common-bit counts `QxG` (float32 values, all integers) against one database level."""
    out_QxG = bits_QxF[:, level.dense_cols].astype(np.float32) @ level.dense_FxG
    if level.rare_cols.size:
        prod = sp.csr_matrix(bits_QxF[:, level.rare_cols], dtype=np.float32) @ level.rare_FxG
        rows = np.repeat(np.arange(prod.shape[0]), np.diff(prod.indptr))
        out_QxG.ravel()[rows * out_QxG.shape[1] + prod.indices] += prod.data
    return out_QxG


def _counts(bits_QxF: np.ndarray, level: _Level) -> tuple[np.ndarray, np.ndarray]:
    """Common bits `c` and union sizes `a + b - c` (float32 holding exact integers) against one level."""
    c_QxG = _intersections(bits_QxF, level)
    a_Q = bits_QxF.sum(axis=1, dtype=np.int64).astype(np.float32)
    return c_QxG, a_Q[:, None] + level.popcount_G.astype(np.float32)[None, :] - c_QxG


def _ratio(c: np.ndarray, denom: np.ndarray, dtype: type) -> np.ndarray:
    """c / denom rounded once to `dtype`; 0 where both fingerprints are empty (RDKit's convention)."""
    with np.errstate(invalid="ignore"):
        out = np.divide(c, denom, dtype=dtype)
    empty = denom == 0
    if empty.any():
        out[empty] = 0.0
    return out


def _pair_counts(queries: FingerprintSet, index: DatabaseIndex) -> tuple[np.ndarray, np.ndarray]:
    """Common bits and union sizes `QxG` (float32, exact integers) against the database in `perm_G`
    order, each pair compared at the shorter length (the longer folded, as RDKit's
    `FingerprintSimilarity`); union NaN where the query is invalid."""
    n_q, n_p = len(queries), len(index.perm_G)
    c_QxG = np.zeros((n_q, n_p), np.float32)
    union_QxG = np.full((n_q, n_p), np.nan, np.float32)
    for size_q in sorted(set(queries.n_bits_G[queries.valid_G].tolist())):
        q_idx = np.flatnonzero(queries.n_bits_G == size_q)
        one = len(q_idx) == n_q
        for size in sorted(index.at_least):
            if size > size_q:
                break
            level = index.exactly.get(size) if size < size_q else index.at_least[size]
            if level is None or len(level.pos_G) == 0:
                continue
            lo = index.start[size]
            bits = _unpack(fold_words(queries.words_Gx32[q_idx], size_q, size))
            c, u = _counts(bits, level)
            if one:
                c_QxG[:, lo:lo + c.shape[1]], union_QxG[:, lo:lo + c.shape[1]] = c, u
            else:
                c_QxG[q_idx, lo:lo + c.shape[1]], union_QxG[q_idx, lo:lo + c.shape[1]] = c, u
    return c_QxG, union_QxG


def tanimoto(queries: FingerprintSet, index: DatabaseIndex) -> np.ndarray:
    """Tanimoto `QxG` (float64) exactly as RDKit's `FingerprintSimilarity`; NaN where either molecule
    is invalid. Keep Q modest (the result is dense): `topk` works per batch."""
    if queries.method != index.fps.method:
        raise ValueError(f"fingerprints differ: queries {queries.method!r}, database {index.fps.method!r}")
    c_QxG, union_QxG = _pair_counts(queries, index)
    out_QxG = np.full((len(queries), len(index.fps)), np.nan)
    out_QxG[:, index.perm_G] = _ratio(c_QxG, union_QxG, np.float64)
    out_QxG[~queries.valid_G] = np.nan
    return out_QxG


def _topk_batch(queries: FingerprintSet, index: DatabaseIndex, k: int, excluded: Sequence[np.ndarray] | None
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A float32 Tanimoto picks candidates (rounding is monotone, so every true top-k pair has a float32
    score >= the float32 k-th, ties included), then float64 c / (a + b - c) ranks them by (score, row)."""
    c_QxG, union_QxG = _pair_counts(queries, index)
    proxy_QxG = _ratio(c_QxG, union_QxG, np.float32)
    proxy_QxG[~queries.valid_G] = -np.inf  # invalid queries get no neighbours
    if excluded is not None:
        col_of = np.full(len(index.fps), -1, np.int64)
        col_of[index.perm_G] = np.arange(len(index.perm_G))
        for q, rows in enumerate(excluded):
            cols = col_of[rows]
            proxy_QxG[q, cols[cols >= 0]] = -np.inf
    q_C, col_C = topk_candidates(proxy_QxG, k)
    s_C = _ratio(c_QxG[q_C, col_C], union_QxG[q_C, col_C], np.float64)
    return rank_pairs(q_C, index.perm_G[col_C], s_C, k, len(queries))


def topk(queries: FingerprintSet, index: DatabaseIndex, k: int, excluded: Sequence[np.ndarray] | None = None,
         batch_size: int = 512) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each query's `k` most similar valid database rows (Tanimoto desc, then lower row); invalid
    queries get none. `excluded[q]` lists database positions query q must not return."""
    if queries.method != index.fps.method:
        raise ValueError(f"fingerprints differ: queries {queries.method!r}, database {index.fps.method!r}")
    rows: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    stage = Stage(f"retrieval: {queries.method} top-{k}", total=len(queries), unit="query")
    for start in range(0, len(queries), batch_size):
        sel = np.arange(start, min(start + batch_size, len(queries)))
        sub = dataclasses.replace(queries, words_Gx32=queries.words_Gx32[sel], n_bits_G=queries.n_bits_G[sel])
        sub_excl = None if excluded is None else [np.asarray(excluded[q], dtype=np.int64) for q in sel]
        if len(index.perm_G) == 0:
            r, s = [np.zeros(0, np.int64)] * len(sel), [np.zeros(0)] * len(sel)
        else:
            r, s = _topk_batch(sub, index, k, sub_excl)
        rows.extend(r)
        scores.extend(s)
        stage.update(len(sel))
    stage.close()
    return rows, scores
