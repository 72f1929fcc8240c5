"""The architecture of README.md ("Architecture") holds in the code: layers, one step shape, no god
file, no private name used across modules, nothing declared twice."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "matching", "indicators", "surveys", "reports", "study", "data_samples")
ALLOWED = {
    "pipeline": set(),
    "matching": {"pipeline"},
    "indicators": {"pipeline"},
    "surveys": {"pipeline"},
    "data_samples": {"pipeline"},
    "reports": {"pipeline"},
    "study": {"pipeline", "matching", "indicators", "surveys", "reports", "data_samples"},
}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    return {str(p.relative_to(ROOT)): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) for every absolute import of a project module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [a.name for a in node.names], node.lineno))
    return [(m, names, line) for m, names, line in out if m.split(".")[0] in PACKAGES]


def test_layers_hold():
    breaches = []
    for rel, path in _modules().items():
        pkg = rel.split("/")[0]
        for module, _, line in _imports(path):
            top = module.split(".")[0]
            if top != pkg and top not in ALLOWED[pkg]:
                breaches.append(f"{rel}:{line} imports {module}")
    assert not breaches, "layer rules broken (README, Architecture):\n" + "\n".join(breaches)


def test_no_package_cycle():
    edges: dict[str, set[str]] = defaultdict(set)
    for rel, path in _modules().items():
        pkg = rel.split("/")[0]
        edges[pkg] |= {m.split(".")[0] for m, _, _ in _imports(path)} - {pkg}
    seen: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in edges[node]:
            assert seen.get(nxt) != 1, "package cycle: " + " -> ".join([*stack, node, nxt])
            if nxt not in seen:
                visit(nxt, [*stack, node])
        seen[node] = 2

    for pkg in PACKAGES:
        if pkg not in seen:
            visit(pkg, [])


def test_no_god_module():
    big = {rel: n for rel, p in _modules().items() if (n := p.read_text(encoding="utf-8").count("\n")) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_no_private_name_imported_from_another_module():
    found = [f"{rel}:{line} imports {name} from {module}"
             for rel, path in _modules().items()
             for module, names, line in _imports(path)
             for name in names if name.startswith("_") and not name.startswith("__")]
    assert not found, "\n".join(found)


def test_no_top_level_name_defined_twice():
    """A public function, class or constant is defined in one module only. By design the same name
    recurs for: ``run`` (every step's entry), ``build`` (every report section's entry) and the
    command-line sub-commands (typer-decorated functions named after the step they call)."""
    where: dict[str, list[str]] = defaultdict(list)
    for rel, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [] if getattr(node, "decorator_list", None) and rel.startswith("study/cli") else [node.name]
                if rel.startswith("reports/sections/") and node.name == "build":
                    names = []
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
            for name in names:
                if not name.startswith("_") and name not in {"run", "main", "app", "console"}:
                    where[name].append(rel)
    twice = {n: w for n, w in where.items() if len(w) > 1}
    assert not twice, f"defined in several modules: {twice}"


STEP_ENTRIES = ["pipeline.runner", "matching.study", "indicators.study", "indicators.sensitivity", "surveys.study",
                "study.sweep"]


@pytest.mark.parametrize("module", STEP_ENTRIES)
def test_every_step_has_one_entry_with_one_signature(module):
    run = importlib.import_module(module).run
    params = list(inspect.signature(run).parameters.values())
    assert [p.name for p in params[:2]] == ["paths", "config"], (module, [p.name for p in params])
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:]), (module, params)


def test_report_entry_has_the_step_signature():
    run = importlib.import_module("reports.build").run
    params = list(inspect.signature(run).parameters.values())
    assert [p.name for p in params[:2]] == ["paths", "config"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:])
