"""Strict JSON values: what every JSON file and `--json` output of the project is written
through (JSON has no NaN or infinity, and the json module does not know numpy types)."""

from __future__ import annotations

import math


def strict_json(x):
    """x as plain JSON values, recursively: numpy scalars and arrays (anything with
    .tolist()) as Python numbers and lists, NaN and infinities as None."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [strict_json(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
