"""The package's import structure, read from the source: the study never imports the
performance accounting (``defectlib.perf``), and no module imports itself back in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import defectlib

PACKAGE = Path(defectlib.__file__).parent
#: The study: none of these may import defectlib.perf.
STUDY = ("defectlib.data", "defectlib.models", "defectlib.training", "defectlib.experiments", "defectlib.results")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _in(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node], _ = 2, stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read_from_every_module():
    graph = import_graph()
    assert "defectlib.perf.bench" in graph and "defectlib.models" in graph["defectlib.perf.bench"]


def test_the_study_never_imports_perf():
    arrows = sorted((m, t) for m, targets in import_graph().items() if _in(m, STUDY)
                    for t in targets if _in(t, ["defectlib.perf"]))
    assert arrows == []


def test_no_import_cycle():
    # A package's __init__ re-exporting its submodules is no cycle: drop the arrows from a
    # submodule up to a package that contains it.
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in import_graph().items()}
    assert _cycle(graph) is None


def test_no_cycle_between_parts_of_the_package():
    # The parts: defectlib.data, defectlib.models, ..., defectlib.perf, defectlib.cli, ...
    part = lambda module: ".".join(module.split(".")[:2])  # noqa: E731
    layers: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        layers.setdefault(part(module), set()).update(
            part(t) for t in targets if part(t) != part(module) and t != "defectlib")
    assert "defectlib.experiments" in layers["defectlib.perf"]
    assert _cycle(layers) is None


def test_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
