"""The ``genguard`` command: a thin shell over the library.

Data goes to stdout, progress and errors to stderr. Exit status: 0 when
nothing is blocked, 1 when something is, 2 on usage errors (and on any other
error, which is printed as one line; ``--debug`` shows the traceback).

Each command group is a module here with a ``register(subparsers)`` function;
add a group by adding a module and a line to :data:`_GROUPS`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Final

from genguard import __version__
from genguard.cli._common import EXIT_BLOCKED, EXIT_USAGE, UsageError
from genguard.errors import GenguardError

__all__ = ["main"]

_GROUPS: Final = ("classify", "scan", "learn", "agenet", "tools", "audit", "serve", "keys")
"""Modules of :mod:`genguard.cli` whose ``register`` adds their commands, in help order."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genguard", description="Screen AI-generated images: minor presence x sexual content.")
    parser.add_argument("--version", action="version", version=f"genguard {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in _GROUPS:
        import_module(f"genguard.cli.{group}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="genguard: %(levelname)s: %(message)s", stream=sys.stderr)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        status: int = args.func(args)
        return status
    except UsageError as exc:
        print(f"genguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # commands drop output to a closed pipe themselves; here the outcome is unknown
        return EXIT_BLOCKED
    except (GenguardError, OSError, ValueError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"genguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
