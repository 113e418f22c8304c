"""The `renalnode` command: one entry point, a subcommand per capability.

The capabilities (training, phantoms, the node) register their subcommands as entry points of the
group `renalnode.commands` (pyproject.toml), so this core module imports none of them.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

COMMAND_GROUP = "renalnode.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="renalnode", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = entry_points(group=COMMAND_GROUP)
    if not commands:
        parser.error(f"no subcommands are installed (entry point group {COMMAND_GROUP}): run `make setup`")
    for command in commands:
        command.load()(sub)
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
