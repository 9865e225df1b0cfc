"""The engine's wings import one way: no wing imports one that imports it back, and no two
modules import each other, directly or round a loop (function-level imports count too)."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

ENGINE = Path(__file__).resolve().parents[2] / "engine"
#: Top-level modules that are not a wing: the public API and the CLI may import any wing.
ENTRY_POINTS = {"engine", "engine.__main__"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ENGINE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, level: int, name: str) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def import_graph() -> Dict[str, Set[str]]:
    """module → the engine modules it imports (packages' own ``__init__`` included)."""
    files = {_module(p): p for p in ENGINE.rglob("*.py")}
    graph: Dict[str, Set[str]] = {m: set() for m in files}
    for module, path in files.items():
        package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: List[str] = []
            if isinstance(node, ast.ImportFrom):
                base = (_resolve(module, package, node.level, node.module or "") if node.level
                        else node.module or "")
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != module and target != "engine":
                    graph[module].add(target)
    return graph


def wing(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of ``graph`` as a list of nodes, or [] when there is none."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    # a package's __init__ that only re-exports lazily is imported by every submodule; a
    # submodule importing a sibling through the package is not a loop between ideas
    edges = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    assert _cycle(edges) == []


def test_wings_import_one_way():
    graph = import_graph()
    wings: Dict[str, Set[str]] = {}
    for module, targets in graph.items():
        if module in ENTRY_POINTS:
            continue
        wings.setdefault(wing(module), set()).update(
            wing(t) for t in targets if wing(t) != wing(module))
    assert _cycle(wings) == []


def test_the_top_level_keeps_only_the_api_the_cli_jobs_and_samples():
    top = {p.stem for p in ENGINE.glob("*.py")} | {p.name for p in ENGINE.iterdir()
                                                   if (p / "__init__.py").is_file()}
    wings = {"analysis", "click", "compute", "formats", "inference", "io", "models",
             "training", "weights"}
    assert top - wings == {"__init__", "__main__", "jobs", "sample"}


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
