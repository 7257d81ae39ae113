"""paced_theory.jsonable.strict_json: the one converter every JSON output goes through."""

from __future__ import annotations

import json

import numpy as np

from paced_theory.jsonable import strict_json


def test_strict_json_turns_numpy_and_non_finite_values_into_json():
    x = {"a": np.float64("nan"), "b": np.float32(1.5), "c": np.array([1.0, np.inf]),
         "d": (np.int64(3), float("-inf")), "e": "text"}
    got = strict_json(x)
    assert got == {"a": None, "b": 1.5, "c": [1.0, None], "d": [3, None], "e": "text"}
    assert json.loads(json.dumps(got, allow_nan=False)) == got
