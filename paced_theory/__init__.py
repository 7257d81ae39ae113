"""paced_theory: the mathematics of PACED (arXiv 2603.11178), derived, checked and simulated.

Pure numpy / scipy / sympy; never imports torch or paced_train. The derivations, in
docs/theory.md, are cited by section (docs/theory.md §N) in the docstrings.
"""

from paced_theory.errors import ConfigError, InputError, PacedError

__all__ = ["PacedError", "InputError", "ConfigError"]
