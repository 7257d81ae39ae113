"""Theory subcommands of `paced`: `theory snr`, `theory robustness`, `fit`, `simulate`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the theory subcommands to the `paced` parser."""
