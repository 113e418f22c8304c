"""The `renalnode` command: one entry point, a subcommand per capability."""
from __future__ import annotations

import argparse
import sys

from deploy.node import cli as node_cli
from training import cli as train_cli
from training.phantom import cli as phantom_cli

SUBCOMMANDS = [phantom_cli, train_cli, node_cli]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="renalnode", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileExistsError, ValueError) as exc:
        print(f"renalnode {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
