"""paced_theory is pure maths: importing every one of its modules pulls in neither torch nor
paced_train (DESIGN.md: arrows point down only). Checked in a fresh interpreter, so modules
that other tests imported into this process cannot hide an import."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import paced_theory

CHECK = """
import importlib, json, pkgutil, sys
import paced_theory
names = [m.name for m in pkgutil.iter_modules(paced_theory.__path__)]
for name in names:
    importlib.import_module("paced_theory." + name)
bad = sorted(k for k in sys.modules if k.split(".")[0] in ("torch", "paced_train"))
print(json.dumps({"modules": names, "bad": bad}))
"""


def test_importing_paced_theory_never_imports_torch_or_paced_train():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         check=True, timeout=300)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    expected = sorted(m.name for m in pkgutil.iter_modules(paced_theory.__path__))
    assert sorted(got["modules"]) == expected and len(expected) >= 10  # every module checked
    assert got["bad"] == [], f"paced_theory imported {got['bad'][:5]}"
