"""The ``twinloop`` command line.

Each sub-command lives in its own module under :mod:`twinloop.commands` with two functions:
``register(subparsers)`` (argument definitions only, no heavy imports) and ``run(args) -> int`` (the exit status).
Exit status 2 means bad input (a clear message is printed to stderr).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = (
    "simulate",
    "trial",
    "decide",
    "export_c",
    "run",
    "status",
    "meal",
    "bolus",
    "hil",
    "fit",
    "replay",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinloop", description="Closed-loop insulin controller with a patient twin.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"twinloop.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"twinloop.commands.{name}":
                continue  # command not built into this distribution
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
