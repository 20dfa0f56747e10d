"""Test harness: 8 fake CPU devices, hermetic caches, no network, shared data from ../shared/data.

Hermetic: the Hugging Face and project caches point at a temporary folder made for this session (and
removed after it), and the hub is offline whatever the caller's environment says, so nothing a machine
has cached or can download changes a result. Subprocesses inherit the same environment.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERMETIC_CACHE = tempfile.mkdtemp(prefix="icma-tests-cache-")
atexit.register(shutil.rmtree, HERMETIC_CACHE, ignore_errors=True)
os.environ.update({
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    "HF_HOME": os.path.join(HERMETIC_CACHE, "huggingface"),
    "HF_HUB_CACHE": os.path.join(HERMETIC_CACHE, "huggingface", "hub"),
    "XDG_CACHE_HOME": HERMETIC_CACHE,  # the project's data cache (icma_jax.data.sources)
    "ICMA_CACHE_DIR": os.path.join(HERMETIC_CACHE, "icma_jax"),  # the WordNet copy (icma_jax.eval.wordnet)
})
for _name in ("ICMA_DATA_DIR", "ICMA_WORDNET_DIR", "TRANSFORMERS_CACHE", "HUGGINGFACE_HUB_CACHE"):
    os.environ.pop(_name, None)

import inspect  # noqa: E402
import pathlib  # noqa: E402
import re  # noqa: E402
import types  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

import reference_deps  # noqa: E402

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
def chebi_slice() -> pathlib.Path:
    """A data root holding the first 40 rows of ChEBI-20 validation and test (tests/testdata, committed)."""
    return REPO / "tests" / "testdata"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """`../shared/data`: ChEBI-20 validation/test, PubChem324k, the SciBERT vocab."""
    return _find_shared_data()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """ICMA_REQUIRE_REFERENCE=1: a test skipped by `pytest.importorskip` of a reference module fails."""
    report = (yield).get_result()
    _fail_reference_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import time."""
    report = (yield).get_result()
    _fail_reference_skip(report)


def _fail_reference_skip(report) -> None:
    if not (report.skipped and reference_deps.required() and isinstance(report.longrepr, tuple)):
        return
    reason = reference_deps.reference_skip_reason(str(report.longrepr[2]).removeprefix("Skipped: "))
    if reason:
        report.outcome = "failed"
        report.longrepr = f"{reference_deps.REQUIRE_ENV}=1 and a reference dependency is missing: {reason}"


_TORCH_USE = re.compile(r"require_module\(\s*[\"'](%s)[\"']|importorskip\(\s*[\"'](%s)[\"']|^\s*import (%s)\b"
                        % (("|".join(reference_deps.TORCH_STACK),) * 3), re.M)


def _uses_torch_stack(item: pytest.Item) -> bool:
    if "hf" in getattr(item, "fixturenames", ()):  # tests/models/conftest.py: tiny transformers models
        return True
    module = getattr(item, "module", None)
    if any(isinstance(v, types.ModuleType) and v.__name__.partition(".")[0] in reference_deps.TORCH_STACK
           for v in vars(module).values() if module is not None):
        return True
    function = getattr(item, "function", None)
    try:
        return function is not None and bool(_TORCH_USE.search(inspect.getsource(function)))
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config, items):
    """Every test that uses the PyTorch stack carries `@pytest.mark.torch` (`-m "not torch"` must run on a
    main-only install): an unmarked one stops the run, named."""
    unmarked = [item.nodeid for item in items if item.get_closest_marker("torch") is None and _uses_torch_stack(item)]
    if unmarked:
        raise pytest.UsageError(f"{len(unmarked)} tests use torch/peft/fcd without @pytest.mark.torch: "
                                + ", ".join(unmarked[:10]))
