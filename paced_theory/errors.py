"""Errors a user can cause. Every message names the file, line, key or argument at fault
and says how to fix it; the CLI prints it as one line and exits with status 2."""


class PacedError(Exception):
    """Base class for user-facing errors (bad input file, bad config, bad argument)."""


class InputError(PacedError, ValueError):
    """Bad numeric input or data file (p outside [0, 1], negative SNR, missing column, ...)."""


class ConfigError(PacedError, ValueError):
    """Bad run configuration (unknown key, wrong type, inconsistent settings)."""
