"""The layout of paced_train holds: no import cycle among its modules (lazy imports inside
functions included); the folders are layers (models/ imports neither loop/ nor experiments/,
loop/ never imports experiments/); the stages never import the loop; and code outside the
loop imports from trainer.py only its public entry points (the stages are where the pieces
live)."""

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
            out.append((n.module, names))
            # from paced_train.loop import losses: the name may itself be a module
            out += [(f"{n.module}.{a}", []) for a in names]
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
    assert len(graph) > 20 and "paced_train.loop.trainer" in graph
    assert cycles(graph) == []


def test_stages_never_import_the_loop():
    graph = import_graph()
    stages = [f"paced_train.loop.{s}" for s in (
        "rollouts", "distill", "batching", "schedule", "losses", "state", "seeding",
        "distributed", "evaluate", "passrates", "ledger", "value")] + ["paced_train.tasks"]
    for stage in stages:
        assert "paced_train.loop.trainer" not in reach(graph, stage), stage


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, transitively."""
    seen, todo = set(), [start]
    while todo:
        for d in graph[todo.pop()] - seen:
            seen.add(d)
            todo.append(d)
    return seen


# A folder may import only the folders listed for it (transitively): arrows point down.
FORBIDDEN = {"paced_train.models": ("paced_train.loop", "paced_train.experiments"),
             "paced_train.loop": ("paced_train.experiments",)}


def layer_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, d) for m in graph for folder, banned in FORBIDDEN.items()
                  if m.startswith(folder + ".") for d in reach(graph, m)
                  if d.startswith(tuple(b + "." for b in banned)))


def test_layer_checker_finds_a_planted_upward_arrow():
    g = {"paced_train.models.hf": {"paced_train.tasks"},
         "paced_train.tasks": {"paced_train.loop.losses"},
         "paced_train.loop.losses": set(),
         "paced_train.loop.trainer": {"paced_train.experiments.report"},
         "paced_train.experiments.report": {"paced_train.loop.ledger"},
         "paced_train.loop.ledger": set()}
    assert layer_violations(g) == [("paced_train.loop.trainer", "paced_train.experiments.report"),
                                   ("paced_train.models.hf", "paced_train.loop.losses")]


def test_folders_are_layers():
    graph = import_graph()
    folders = {m.split(".")[1] for m in graph if m.count(".") >= 2}
    assert {"loop", "models", "experiments", "integrations"} <= folders
    assert not [m for m in graph if m.count(".") == 1 and m.split(".")[1] in
                {"trainer", "losses", "hf", "compare"}]  # nothing left at the old flat paths
    assert layer_violations(graph) == []


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
            for mod, names in imported(tree) if mod == "paced_train.loop.trainer" for n in names}
    assert used  # the scan sees the real importers
    assert {(p, n) for p, n in used if n not in TRAINER_API} == set()
