"""Runs a script (or `-c CODE`) as if torch and its stack were not installed: `python tests/without_torch.py ...`.

The import machinery stops finding them, so `import torch` fails and `importlib.util.find_spec("torch")` is
None (transformers then treats torch as absent). `sys.modules["torch"] = None` would do the first but breaks
scipy, which reads `sys.modules["torch"].Tensor` whenever the key exists.
"""

import importlib.machinery
import os
import runpy
import sys

BLOCKED = frozenset({"torch", "torchvision", "peft", "accelerate", "fcd"})


class _PathFinderWithoutTorch(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        return super().find_spec(name, path, target)


def block_torch() -> None:
    sys.meta_path[:] = [_PathFinderWithoutTorch if f is importlib.machinery.PathFinder else f for f in sys.meta_path]


if __name__ == "__main__":
    block_torch()
    if sys.argv[1] == "-c":
        code, sys.argv = sys.argv[2], ["-c", *sys.argv[3:]]
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = sys.argv[1:]
        sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
        runpy.run_path(sys.argv[0], run_name="__main__")
