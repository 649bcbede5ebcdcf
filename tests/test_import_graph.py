"""The package's imports run one way: no module reaches (directly or through others, at any depth and
whether the import sits at the top or inside a function) a module that imports it back. A circle is how
'interface imports its implementations that import the interface' crept in (realtalk/face_model.py)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "metrics", "baselines", "reports", "realtalk")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports (any nesting level)."""
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    names = {_module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for p in files:
        me, deps = _module_name(p), set()
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in names and t != me and not me.startswith(t + ".")}
        graph[me] = deps - {me}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_detector_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert "realtalk.face_models" in graph and "realtalk.bfm" in graph["realtalk.face_models"]  # the graph is read
    assert "harness.core.plugin_sources" in graph["metrics.base"]
    assert cycles(graph) == []


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run against the layers: harness.core is the ground (it imports nothing of the project
    outside itself); metrics, realtalk, baselines and reports stand on it and never import the rest of
    harness (the orchestration: runner, evaluate, executors, cli, commands), which imports them."""
    bad = []
    for me, deps in graph.items():
        for dep in sorted(deps):
            if me.startswith("harness.core") and not dep.startswith("harness.core"):
                bad.append(f"{me} -> {dep}")
            elif me.split(".")[0] in ("metrics", "realtalk", "baselines", "reports") \
                    and dep.startswith("harness") and not dep.startswith("harness.core"):
                bad.append(f"{me} -> {dep}")
    return bad


def test_layer_rule_catches_a_violation():
    assert layer_violations({"harness.core.media": {"metrics.base"}, "metrics.fid": {"harness.runner"},
                             "metrics.lmd": {"harness.core.faces"}, "harness.runner": {"metrics.fid"}}) \
        == ["harness.core.media -> metrics.base", "metrics.fid -> harness.runner"]


def test_imports_follow_the_layers():
    graph = import_graph()
    assert "harness.core.weights" in graph["metrics.fid"]  # the graph is read
    assert layer_violations(graph) == []
