"""Test harness: 8 fake CPU devices, no network, shared data from ../shared/data."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pathlib  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = pathlib.Path(__file__).resolve().parents[1]


def _find_shared_data() -> pathlib.Path:
    if os.environ.get("ICMA_SHARED_DATA"):
        return pathlib.Path(os.environ["ICMA_SHARED_DATA"])
    for parent in [REPO, *REPO.parents]:
        cand = parent / "shared" / "data"
        if cand.is_dir():
            return cand
    raise RuntimeError("shared data folder not found: set ICMA_SHARED_DATA to the folder holding chebi20/")


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """`../shared/data`: ChEBI-20 validation/test, PubChem324k, the SciBERT vocab."""
    return _find_shared_data()
