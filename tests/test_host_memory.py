"""host_memory: the re-exec sets glibc's malloc settings, and freed big blocks are then reused without page faults."""

import json
import os
import subprocess
import sys

import pytest

from icma_jax import host_memory

pytestmark = pytest.mark.skipif(not host_memory.supported(), reason="glibc malloc settings: glibc on Linux only")

PROBE = """
import json, os, resource
from icma_jax import host_memory
host_memory.retain_freed_memory()
import ctypes
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def touch_and_free(n):  # what XLA does with a step's temporaries (numpy would madvise huge pages instead)
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch_and_free(512 << 20)
before = faults()
touch_and_free(512 << 20)
print(json.dumps({"env": {k: os.environ.get(k) for k in host_memory.ENV}, "faults": faults() - before}))
"""


def _probe(**env) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in host_memory.ENV and k != host_memory.SWITCH} | env
    out = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_opt_in_reexec_sets_the_settings_and_freed_blocks_come_back_without_faults():
    pages = (512 << 20) // 4096
    on = _probe(ICMA_MALLOC="1")
    assert on["env"] == host_memory.ENV
    assert on["faults"] < pages // 20, on  # the second 512 MB reuses the first's pages
    for off in (_probe(), _probe(ICMA_MALLOC="0")):  # the default keeps glibc's own settings
        assert off["env"] == {k: None for k in host_memory.ENV}
        assert off["faults"] > pages // 2, off  # glibc's default: munmap on free, fault everything in again
