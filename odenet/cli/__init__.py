"""The ``odenet`` command line.

Each subcommand is a function ``_cmd_NAME(args) -> exit code`` in :mod:`odenet.cli.scheme` (list,
show, check, analyze, compile) or :mod:`odenet.cli.train` (train, evaluate, stability). Errors that
odenet raises on purpose are printed as they are (file, line, column, caret) without a traceback,
and give exit 1. The commands import only what they use, so ``odenet list`` does not load torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from odenet.cli import profile, scheme, train
from odenet.errors import OdenetError, SchemeNotFoundError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    import odenet

    parser = argparse.ArgumentParser(
        prog="odenet",
        description=(
            "Numerical ODE schemes as neural-network architectures: parse, analyze, compile and train them."
        ),
        epilog="A SCHEME is a library name (see 'odenet list') or a path to a .scheme file.",
    )
    parser.add_argument("--version", action="version", version=f"odenet {odenet.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    scheme.add_commands(commands)
    train.add_commands(commands)
    profile.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        # Every file odenet writes is renamed into place whole: what is on disk is the last
        # finished epoch (or report), never half of one.
        message = "odenet: interrupted; files already written are complete (the last finished epoch)"
        print(message, file=sys.stderr)
        return 130
    except SchemeNotFoundError as exc:
        print(f"odenet: {exc}", file=sys.stderr)
        return 1
    except OdenetError as exc:
        print(exc, file=sys.stderr)
        return 1
