"""The layout of paced_train holds: no import cycle among its modules (lazy imports inside
functions included), the stages never import the loop, and code outside the loop imports
from trainer.py only its public entry points (the stages are where the pieces live)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "paced_train"
TRAINER_API = {"train", "setup", "distill_step", "NonFiniteError"}


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imported(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, names) of every import of paced_train in the tree, at any depth."""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("paced_train"):
            names = [a.name for a in n.names]
            if n.module == "paced_train":  # from paced_train import losses, tasks
                out += [(f"paced_train.{a}", []) for a in names]
            else:
                out.append((n.module, names))
        elif isinstance(n, ast.Import):
            out += [(a.name, []) for a in n.names if a.name.startswith("paced_train")]
    return out


def import_graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {d for d, _ in imported(ast.parse(p.read_text())) if d in mods}
            for m, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle reachable by depth-first search (enough to say 'none')."""
    found, state = [], {}

    def visit(u: str, path: list[str]) -> None:
        state[u] = "open"
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                found.append(path[path.index(v):] + [v])
            elif v not in state:
                visit(v, path + [v])
        state[u] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_cycle_finder_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_paced_train_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 20 and "paced_train.trainer" in graph
    assert cycles(graph) == []


def test_stages_never_import_the_loop():
    graph = import_graph()
    for stage in ("rollouts", "distill", "batching", "schedule", "losses", "state", "seeding",
                  "distributed", "evaluate", "passrates", "ledger", "tasks"):
        reach, todo = set(), [f"paced_train.{stage}"]
        while todo:  # everything the stage imports, transitively
            for d in graph[todo.pop()] - reach:
                reach.add(d)
                todo.append(d)
        assert "paced_train.trainer" not in reach, stage


def test_outside_the_loop_only_the_entry_points_come_from_trainer():
    sources = [p for d in ("paced_train", "bench", "paper_figures", "examples", "configs",
                           "tests") for p in (ROOT / d).rglob("*.py")]
    trees = [(p, ast.parse(p.read_text())) for p in sources]
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                code = "\n".join(line for line in "".join(cell["source"]).splitlines()
                                 if not line.lstrip().startswith(("%", "!")))
                trees.append((nb, ast.parse(code)))
    used = {(str(p.relative_to(ROOT)), n) for p, tree in trees
            for mod, names in imported(tree) if mod == "paced_train.trainer" for n in names}
    assert used  # the scan sees the real importers
    assert {(p, n) for p, n in used if n not in TRAINER_API} == set()
