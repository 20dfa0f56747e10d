"""The `icma-jax` console script: one subcommand per module in this package."""

import argparse
import importlib
import sys

# Each entry names a module `icma_jax.cli.<name>` that defines `add_parser(subparsers)`; the parser it
# adds sets `func=run`. Add a command by adding its module here (one line each).
COMMANDS = (
    "download",
    "data",
    "evaluate",
    "train",
    "generate",
    "export",
    "retrieve",
    "train_encoder",
    "launch",
    "report",
    "predict",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="icma-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"icma_jax.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # user-facing errors: one clear line
        print(f"icma-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
