"""paced_theory: the mathematics of PACED (arXiv 2603.11178), derived, checked and simulated.

Pure numpy / scipy / sympy; never imports torch or paced_train. See THEORY.md in the
repository's shared notes and the README's "Paper versus our derivation" section.
"""

from paced_theory.errors import ConfigError, InputError, PacedError

__all__ = ["PacedError", "InputError", "ConfigError"]
