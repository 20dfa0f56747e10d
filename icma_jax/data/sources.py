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
    url: str  # pinned to a commit, never a branch
    git_blob: str  # sha1 of b"blob <size>\0" + content: the id git gives the file in the source repository
    n_rows: int
    sha256: str | None = None  # checked too where known


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    subdir: str
    files: dict[str, DataFile]  # split -> file
    license: str
    source: str


_MOLT5 = "https://raw.githubusercontent.com/blender-nlp/MolT5/754f9bffa4a638e2f1386d0ca19b5c3ed0a5b4aa/ChEBI-20_data"
_ICMA = ("https://raw.githubusercontent.com/phenixace/ICMA/974adf3cd9487c6ee4768c4d6317e11ab499e11d"
         "/data/PubChem324k")
# The PubChem324k files can also come from a mirror: a base URL holding iupac/ and molcap/ (same checks).
ENV_PUBCHEM_URL = "ICMA_PUBCHEM324K_URL"


def _pubchem(kind: str, split: str, git_blob: str, n_rows: int, sha256: str | None = None) -> DataFile:
    return DataFile(f"pubchem324k/{kind}/{split}.txt", f"{_ICMA}/{kind}/raw/{split}.txt", git_blob, n_rows, sha256)


DATASETS: dict[str, Dataset] = {
    "chebi20": Dataset(
        name="chebi20", subdir="chebi20", license="CC BY 4.0",
        source="ChEBI-20 (Edwards et al. 2021/2022), MolT5 repository ChEBI-20_data/",
        files={
            "train": DataFile("chebi20/train.txt", f"{_MOLT5}/train.txt",
                              "c1b42b82fdc8fb5287614e159196e25370763aac", 26407),
            "validation": DataFile("chebi20/validation.txt", f"{_MOLT5}/validation.txt",
                                   "694d328d621966d5c9ad0f36083fdfcf293191d5", 3301,
                                   "f410b58e6825986577d01b4f0c14b59ed61c1343a15118ba584de4bbcea1508c"),
            "test": DataFile("chebi20/test.txt", f"{_MOLT5}/test.txt",
                             "cf6da70d55c2745c6e64cf6864ea8cdbcdc80663", 3300,
                             "91776254b54ef13ad701ede0ecdbd7bcd30c19a66e52aa34a6dac8d0e7306d72"),
        }),
    "pubchem324k-iupac": Dataset(
        name="pubchem324k-iupac", subdir="pubchem324k/iupac", license="PubChem (public domain data)",
        source="PubChem324k (MolCA split) reformatted by ICMA: SMILES <-> IUPAC name",
        files={
            "train": _pubchem("iupac", "train", "bdd40247ea8f9709ac4acd1238f589305982e655", 11856,
                              "22e605ad33d371b24fee213c4655f7391648ebe7d76c1e5a727fa21d41477fbb"),
            "validation": _pubchem("iupac", "validation", "104c5d4056158591e316ae24ea66f96e73c2f21c", 982,
                                   "53642bfb5875467a3ebcd788961b4a933a3ed40f45637f1e6ebeb0de87305fcb"),
            "test": _pubchem("iupac", "test", "bb1a0af16bc0db811b8d14bb02ab8504597f8d01", 1985,
                             "e216b4fd99dc23ab6f16d1643cced45e7663f20dae82d6c607b83b9a1731e347"),
        }),
    "pubchem324k-molcap": Dataset(
        name="pubchem324k-molcap", subdir="pubchem324k/molcap", license="PubChem (public domain data)",
        source="PubChem324k (MolCA split) molecule captions, as shipped by ICMA",
        files={
            "train": _pubchem("molcap", "train", "458d74be1c92cc4eaa2794f053466f656b76ce2e", 12000),
            "validation": _pubchem("molcap", "validation", "fc43ddcace1f06a672a48d01471c5490eaae304d", 1000,
                                   "03d3e8248c98954c50934fcebc07e266ac8885238a3322fc457dc210bc91f75f"),
            "test": _pubchem("molcap", "test", "5de61ad900b8719eeab69eb0e71b93a47849a0ec", 2000,
                             "0bdf2de078a24c2fd772eb08c97fecf014ba9fcb1edb5fa4a0483f2da7de17db"),
        }),
}


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
