"""Reference dependencies of the tests: the PyTorch stack (torch, peft, fcd), Debian's WordNet, the SmolLM2
package, Chromium. A bare `pytest` (or a main-only install) skips a test whose reference is missing; with
ICMA_REQUIRE_REFERENCE=1, which `make test` sets, the test fails instead, in one line saying what to install.

`import reference_deps` from any test (tests/ is on sys.path through tests/conftest.py).
"""

from __future__ import annotations

import importlib
import os
import re
from types import ModuleType
from typing import NoReturn

import pytest

REQUIRE_ENV = "ICMA_REQUIRE_REFERENCE"
TORCH_STACK = ("torch", "peft", "fcd", "accelerate")
# `pytest.importorskip` of these is a missing reference too (conftest turns such a skip into a failure)
REFERENCE_MODULES = (*TORCH_STACK, "transformers", "gguf", "nltk")
INSTALL = {name: "pip install -e '.[test]' (make install-test)" for name in REFERENCE_MODULES}
_IMPORTORSKIP = re.compile(r"could not import '(%s)(\.[\w.]+)?'" % "|".join(REFERENCE_MODULES))


def required() -> bool:
    """True when a missing reference must fail the run (ICMA_REQUIRE_REFERENCE=1)."""
    return os.environ.get(REQUIRE_ENV, "0") == "1"


def missing(reason: str) -> NoReturn:
    """Skip (bare pytest) or fail in one line (ICMA_REQUIRE_REFERENCE=1): a reference dependency is missing."""
    if required():
        pytest.fail(f"{REQUIRE_ENV}=1 and a reference dependency is missing: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str) -> ModuleType:
    """`import name`, or `missing(...)` naming the install command."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"{name} is not importable ({e}); install it with {INSTALL.get(name, 'pip install ' + name)}")


def reference_skip_reason(reason: str) -> str | None:
    """The reason of a `pytest.importorskip` skip when it is about a reference module, else None."""
    return reason if _IMPORTORSKIP.search(reason) else None
