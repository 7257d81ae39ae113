"""The `paced` command. Theory subcommands live in paced_theory.cli; training subcommands
are registered here and import torch lazily, so `paced theory ...` starts fast."""

from __future__ import annotations

import argparse
import os
import sys

from paced_theory import cli as theory_cli
from paced_theory.errors import PacedError
from paced_train import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paced",
        description="PACED: weight each problem by p^a (1-p)^b of the student's pass rate p.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    theory_cli.register(sub)
    commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `paced ... | head`: the reader left; stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit cannot raise again
        return 128 + 13  # killed by SIGPIPE, as the shell reports it


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    # `section.key=value` overrides may come before or after options
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        return int(args.func(args) or 0)
    except PacedError as exc:
        print(f"paced: error: {' '.join(str(exc).split())}", file=sys.stderr)  # one line
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line (for train: the command that goes on)
        hint = getattr(args, "on_interrupt", None)
        print(f"paced: {hint(args) if hint else 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
