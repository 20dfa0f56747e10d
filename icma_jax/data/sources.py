"""Where the datasets live: names, file layout, checksums, and the data-folder lookup order."""

from __future__ import annotations

import dataclasses
import os
import pathlib

from icma_jax.data.records import Split, load_split

SPLITS = ("train", "validation", "test")
ENV_DATA_DIR = "ICMA_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One public file: where it goes under a data root, where it comes from, what it must hash to."""

    relpath: str
    url: str | None
    sha256: str | None  # None: not pinned (see `unpinned_reason`); the row count is checked instead
    n_rows: int
    unpinned_reason: str = ""


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    subdir: str
    files: dict[str, DataFile]  # split -> file
    license: str
    source: str


_MOLT5 = "https://raw.githubusercontent.com/blender-nlp/MolT5/main/ChEBI-20_data"
_TRAIN_UNPINNED = ("the 26,407-row train.txt was not reachable when the checksum table was written, so it "
                   "is verified by its row count and its hash is printed for you to pin")

DATASETS: dict[str, Dataset] = {
    "chebi20": Dataset(
        name="chebi20", subdir="chebi20", license="CC BY 4.0",
        source="ChEBI-20 (Edwards et al. 2021/2022), MolT5 repository ChEBI-20_data/",
        files={
            "train": DataFile("chebi20/train.txt", f"{_MOLT5}/train.txt", None, 26407, _TRAIN_UNPINNED),
            "validation": DataFile("chebi20/validation.txt", f"{_MOLT5}/validation.txt",
                                   "f410b58e6825986577d01b4f0c14b59ed61c1343a15118ba584de4bbcea1508c", 3301),
            "test": DataFile("chebi20/test.txt", f"{_MOLT5}/test.txt",
                             "91776254b54ef13ad701ede0ecdbd7bcd30c19a66e52aa34a6dac8d0e7306d72", 3300),
        }),
    "pubchem324k-iupac": Dataset(
        name="pubchem324k-iupac", subdir="pubchem324k/iupac", license="PubChem (public domain data)",
        source="PubChem324k (MolCA split) reformatted by ICMA: SMILES <-> IUPAC name",
        files={
            "train": DataFile("pubchem324k/iupac/train.txt", None,
                              "22e605ad33d371b24fee213c4655f7391648ebe7d76c1e5a727fa21d41477fbb", 11856),
            "validation": DataFile("pubchem324k/iupac/validation.txt", None,
                                   "53642bfb5875467a3ebcd788961b4a933a3ed40f45637f1e6ebeb0de87305fcb", 982),
            "test": DataFile("pubchem324k/iupac/test.txt", None,
                             "e216b4fd99dc23ab6f16d1643cced45e7663f20dae82d6c607b83b9a1731e347", 1985),
        }),
    "pubchem324k-molcap": Dataset(
        name="pubchem324k-molcap", subdir="pubchem324k/molcap", license="PubChem (public domain data)",
        source="PubChem324k (MolCA split) molecule captions",
        files={
            "train": DataFile("pubchem324k/molcap/train.txt", None, None, 12000,
                              "train.txt was not available when the checksum table was written"),
            "validation": DataFile("pubchem324k/molcap/validation.txt", None,
                                   "03d3e8248c98954c50934fcebc07e266ac8885238a3322fc457dc210bc91f75f", 1000),
            "test": DataFile("pubchem324k/molcap/test.txt", None,
                             "0bdf2de078a24c2fd772eb08c97fecf014ba9fcb1edb5fa4a0483f2da7de17db", 2000),
        }),
}
# PubChem324k has no canonical public URL for these TSV files: `download` takes them from a mirror
# given by $ICMA_PUBCHEM324K_URL (a base URL holding iupac/ and molcap/), checked against the table.
ENV_PUBCHEM_URL = "ICMA_PUBCHEM324K_URL"


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "icma_jax" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Data root, in order: the explicit argument, `$ICMA_DATA_DIR`, the cache folder."""
    if data_dir:
        return pathlib.Path(data_dir)
    if os.environ.get(ENV_DATA_DIR):
        return pathlib.Path(os.environ[ENV_DATA_DIR])
    return cache_dir()


def split_path(dataset: str, split: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The file of one split under the resolved data root; a clear error when it is missing."""
    ds = get_dataset(dataset)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = resolve_data_dir(data_dir)
    path = root / ds.files[split].relpath
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found (dataset {dataset}, split {split}). Run `icma-jax download {dataset.split('-')[0]}`"
            f" or place the file there; data is looked up in --data-dir, then ${ENV_DATA_DIR}, then {cache_dir()}")
    return path


def load_dataset_split(dataset: str, split: str, data_dir: str | os.PathLike | None = None,
                       *, strict: bool = False) -> Split:
    return load_split(split_path(dataset, split, data_dir), strict=strict, name=f"{dataset}/{split}")
