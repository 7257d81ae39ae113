"""`--help` lists every valid value of the list-valued flags: fit --families, simulate
--methods, compare --methods (a value missing here is a value a user cannot discover)."""

from __future__ import annotations

import argparse
import re

import pytest

from paced_theory.fit import FAMILIES
from paced_train.cli import main
from paced_train.config import METHOD_OVERRIDES

SIMULATE_METHODS = ("uniform", "hard", "beta", "beta:A,B", "beta+floor:A,B,EPS", "oracle")


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv,flag,values", [
    (("fit",), "--families", FAMILIES),
    (("simulate",), "--methods", SIMULATE_METHODS),
    (("compare",), "--methods", tuple(METHOD_OVERRIDES)),
])
def test_help_lists_every_valid_value(capsys, monkeypatch, argv, flag, values):
    monkeypatch.setenv("COLUMNS", "100")
    text = help_text(capsys, *argv)
    assert flag in text

    def listed(v: str) -> bool:  # as a whole value: "uniform" inside "uniform-reverse" is not
        return re.search(rf"(?<![\w:+-]){re.escape(v)}(?![\w:+-])", text) is not None

    missing = [v for v in values if not listed(v)]
    assert not missing, f"{' '.join(argv)} --help does not list {missing}"


def test_the_simulate_values_listed_are_the_accepted_ones():
    """Every documented simulate method parses (with numbers for A, B, EPS), and a name not
    listed is refused, so SIMULATE_METHODS above cannot drift from the parser."""
    from paced_theory.errors import InputError
    from paced_theory.population import parse_method

    for m in SIMULATE_METHODS:
        parse_method(m.replace("A,B,EPS", "1,1,0.1").replace("A,B", "2,2"))
    with pytest.raises(InputError, match="unknown method"):
        parse_method("median")


def _choices(parser, path: tuple[str, ...], flag: str) -> set:
    """The argparse choices of `flag` in the (sub)command `path`."""
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return set(next(a for a in parser._actions if flag in a.option_strings).choices)


def test_cli_choices_are_the_sources_values():
    """The CLI spells some choice lists out so that `paced theory ...` never imports torch;
    this keeps them equal to the constants they mirror."""
    from paced_theory.efficiency import CRITERIA
    from paced_train.cli import build_parser
    from paced_train.config import CHOICES

    parser = build_parser()
    devices = set(CHOICES[("run", "device")])
    assert _choices(parser, ("train",), "--device") == devices
    assert _choices(parser, ("pretrain",), "--device") == devices
    assert _choices(parser, ("theory", "snr"), "--criterion") == set(CRITERIA)
