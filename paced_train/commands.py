"""Training subcommands of `paced`: train, compare, demo, pretrain (filled in by paced_train)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the training subcommands to the `paced` parser."""
