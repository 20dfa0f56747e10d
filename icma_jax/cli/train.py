"""`icma-jax train --config configs/x.py[:arg] --workdir DIR [--config.group.key=value ...]`: same as train.py."""

from __future__ import annotations

import argparse
import pathlib
import sys


def add_parser(subparsers) -> None:
    # prefix_chars="+" hands every --flag through untouched: absl / ml_collections parse them, as in train.py.
    p = subparsers.add_parser("train", prefix_chars="+", add_help=False,
                              help="In-Context Molecule Tuning + evaluation (flags as train.py: --config, --workdir)")
    p.add_argument("flags", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def _config_root(flags: list[str]) -> None:
    """Puts the folder above the config file on sys.path so `from configs import common` works anywhere."""
    for i, f in enumerate(flags):
        value = f.split("=", 1)[1] if f.startswith("--config=") else (
            flags[i + 1] if f == "--config" and i + 1 < len(flags) else None)
        if value:
            root = str(pathlib.Path(value.split(":", 1)[0]).resolve().parent.parent)
            if root not in sys.path:
                sys.path.insert(0, root)


def run(args: argparse.Namespace) -> int:
    from icma_jax import host_memory

    host_memory.retain_freed_memory()
    from absl import app, flags, logging
    from ml_collections import config_flags

    from icma_jax.training import loop

    _config_root(args.flags)
    config = config_flags.DEFINE_config_file("config", None, "config file: path/to/config.py[:arg]", lock_config=True)
    workdir = flags.DEFINE_string("workdir", None, "run directory")
    flags.mark_flags_as_required(["config", "workdir"])

    started = []

    def main(argv: list[str]) -> None:
        started.append(True)
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)
        loop.train_and_evaluate(config.value, workdir.value)

    try:
        app.run(main, argv=["icma-jax train", *args.flags])
    except AttributeError as e:  # while parsing flags: an override names a key the config does not have
        if started:
            raise
        raise ValueError(f"unknown config key in an override ({e}); keys are listed in icma_jax/config.py") from None
    return 0
