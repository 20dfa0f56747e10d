"""`icma-jax train --config configs/x.py[:arg] --workdir DIR [--config.group.key=value ...]`: same as train.py.

A user error (an unknown or misspelt key, a bad value, a missing config or data file, a non-finite loss)
is one line naming the key or file, and exit status 2.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from icma_jax import config as config_lib

USAGE = "--config path/to/config.py[:arg] --workdir DIR [--config.group.key=value ...]"
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)


def add_parser(subparsers) -> None:
    # prefix_chars="+" hands every --flag through untouched: absl / ml_collections parse them, as in train.py.
    p = subparsers.add_parser("train", prefix_chars="+", add_help=False,
                              help="In-Context Molecule Tuning + evaluation (flags as train.py: --config, --workdir)")
    p.add_argument("flags", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def _config_file(argv: list[str]) -> tuple[str, list[str]]:
    """The `--config` file spec and the other flags."""
    specs, rest, i = [], [], 0
    while i < len(argv):
        if argv[i].startswith("--config="):
            specs.append(argv[i].split("=", 1)[1])
        elif argv[i] == "--config" and i + 1 < len(argv):
            specs.append(argv[i + 1])
            i += 1
        else:
            rest.append(argv[i])
        i += 1
    if len(specs) != 1:
        raise ValueError(f"exactly one --config is required (usage: {USAGE})")
    return specs[0], rest


def check_overrides(argv: list[str]) -> None:
    """Every `--config.group.key=...` names a declared key (ml_collections would raise a bare AttributeError)."""
    known = set(config_lib.declared_keys())
    for arg in argv:
        if arg.startswith("--config."):
            key = arg[len("--config."):].split("=", 1)[0]
            if key not in known:
                raise config_lib.unknown_key(key)


def parse(argv: list[str], prog: str):
    """(ConfigDict, workdir) from train.py's flags; a bad flag or config argument is a ValueError naming it."""
    from absl import flags
    from ml_collections import config_flags

    spec, rest = _config_file(argv)
    check_overrides(rest)
    try:
        loaded = config_lib.load_config_file(spec)
    except ValueError as e:  # a bad `:key=value` argument of the config file
        raise ValueError(f"--config={spec}: {e}") from None
    values = flags.FlagValues()
    config_flags.DEFINE_config_dict("config", loaded, "the run config",
                                    flag_values=values, lock_config=True, sys_argv=[prog, *rest])
    flags.DEFINE_string("workdir", None, "run directory: config, checkpoints, metrics, predictions",
                        flag_values=values)
    try:
        extra = values([prog, *rest])
    except flags.Error as e:
        raise ValueError(str(e)) from None
    if len(extra) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(extra[1:])} (usage: {prog} {USAGE})")
    if values.workdir is None:
        raise ValueError(f"--workdir is required (usage: {prog} {USAGE})")
    return values.config, values.workdir


def main(argv: list[str], prog: str = "icma-jax train") -> int:
    """Parses the flags and runs (or resumes) `train_and_evaluate`; user errors print one line, exit 2."""
    if {"-h", "--help"} & set(argv):
        print(f"usage: {prog} {USAGE}\nRe-running the same command resumes from the latest checkpoint in DIR.")
        return 0
    from absl import logging

    from icma_jax.run import train_and_evaluate
    from icma_jax.run.loop import Stopped

    try:
        config, workdir = parse(argv, prog)
        logging.set_verbosity(logging.WARNING)  # library INFO chatter (Orbax, XLA) off; progress is printed
        started = time.monotonic()
        train_and_evaluate(config, workdir)
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:  # preemption: 128 + SIGTERM, as a process ended by the signal reports itself
        print(f"{prog}: {e}", file=sys.stderr)
        return 143
    print(resource_summary(time.monotonic() - started))
    return 0


def resource_summary(wall_s: float) -> str:
    """One line: wall time and this process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    return f"done in {int(wall_s // 60)} min {wall_s % 60:.0f} s wall, peak resident memory {peak_gib:.2f} GiB"


def run(args: argparse.Namespace) -> int:
    from icma_jax import host_memory

    host_memory.retain_freed_memory()
    return main(args.flags)
