"""Opt-in glibc malloc settings that keep freed host memory mapped between train steps (`ICMA_MALLOC=1`).

XLA:CPU allocates each step's temporaries (the layer loop's saved activations) and frees them when the step
ends; glibc serves blocks over 32 MB with mmap and returns them with munmap, so every step page-faults the
same gigabytes in again. These settings keep one heap that is never trimmed, so freed blocks are reused
without faults, but the never-trimmed heap also holds on to fragmented memory and raises the peak resident
size several-fold (docs/RESULTS.md), so they are off unless asked for. glibc reads them only at process
start, hence the re-exec.
"""

from __future__ import annotations

import os
import platform
import sys

ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 62)}
SWITCH = "ICMA_MALLOC"


def supported() -> bool:
    """True on Linux with glibc."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def requested() -> bool:
    """True when the user opted in (`ICMA_MALLOC=1`)."""
    return os.environ.get(SWITCH, "0") == "1"


def retain_freed_memory() -> None:
    """With `ICMA_MALLOC=1`, re-executes this process (same interpreter and arguments) with `ENV` set, once."""
    if not (requested() and supported()) or all(os.environ.get(k) == v for k, v in ENV.items()):
        return
    os.environ.update(ENV)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
