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
    from absl import app, flags
    from ml_collections import config_flags

    from icma_jax.training import loop

    _config_root(args.flags)
    config = config_flags.DEFINE_config_file("config", None, "config file: path/to/config.py[:arg]", lock_config=True)
    workdir = flags.DEFINE_string("workdir", None, "run directory")
    flags.mark_flags_as_required(["config", "workdir"])

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        loop.train_and_evaluate(config.value, workdir.value)

    app.run(main, argv=["icma-jax train", *args.flags])
    return 0
