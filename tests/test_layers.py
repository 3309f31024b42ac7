"""The package's layers: core -> retrieval -> synthetic, training -> apps. A module imports only from
its own layer or the layers below, and no two modules import each other, even through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "traffic_retrieval"
RANK = {"core": 0, "retrieval": 1, "synthetic": 2, "training": 2, "apps": 3}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every traffic_retrieval module ``path`` imports, at the top or inside a function."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("traffic_retrieval"):
                for alias in node.names:  # "from .x import y" may name a module y
                    sub = f"{target}.{alias.name}"
                    found.add(sub if (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists() else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("traffic_retrieval")}
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_belongs_to_a_layer():
    loose = [m for m in GRAPH if m != "traffic_retrieval" and layer(m) is None]
    assert not loose, f"modules outside the layers {sorted(RANK)}: {loose}"


def test_no_module_imports_a_higher_layer():
    upward = [(m, t) for m, targets in GRAPH.items() for t in targets
              if layer(m) and layer(t) and RANK[layer(t)] > RANK[layer(m)]]
    sideways = [(m, t) for m, targets in GRAPH.items() for t in targets
                if layer(m) and layer(t) and RANK[layer(t)] == RANK[layer(m)] and layer(t) != layer(m)]
    assert not upward, f"upward imports: {upward}"
    assert not sideways, f"imports between synthetic and training: {sideways}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_no_import_cycles():
    graph = {m: {t for t in targets if not t.endswith("__init__")} for m, targets in GRAPH.items()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


@pytest.mark.parametrize("graph, cyclic", [({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
                                           ({"a": {"b"}, "b": {"c"}, "c": set()}, False)])
def test_the_cycle_finder_can_tell(graph, cyclic):
    assert (find_cycle(graph) is not None) == cyclic


def test_the_import_reader_sees_imports_inside_functions(tmp_path):
    probe = PACKAGE / "apps" / "commands" / "evaluate.py"
    assert "traffic_retrieval.core.evaluation" in imports(probe)
    assert "traffic_retrieval.retrieval.pipeline" in GRAPH["traffic_retrieval.apps.commands.infer"]
