"""The package's layers, read from the source with ``ast`` (nothing is imported).

Every ``import`` counts, at module level or inside a function: a function-level import
still ties the modules together, it only defers the cost. Serving (``shoprank.ranking``,
and the BentoML service in serving/) stands on its own: it reaches no training or
evaluation code, directly or through the modules it imports. And no module imports
itself back through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT, project_files

SRC = ROOT / "src"
SERVING = ("shoprank.ranking",)
NOT_FOR_SERVING = ("shoprank.training", "shoprank.evaluation")


def modules(src: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``src`` (a package is its __init__.py)."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that the file imports anywhere in it (relative imports resolved).

    ``from a import b`` is the module ``a.b`` when there is one, else ``a``; a name is
    followed to the deepest known module it names.
    """

    def deepest(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {m for a in node.names if (m := deepest(a.name))}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                m = full if full in known else deepest(base)
                if m:
                    out.add(m)
    out.discard(name)
    return out


def import_graph(src: Path, extra: dict[str, Path] | None = None) -> dict[str, set[str]]:
    known = modules(src)
    files = {**known, **(extra or {})}
    return {name: imported(path, name, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as ``[a, b, ..., a]``, or None when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` imports, directly or not, mapped to the module that imports it."""
    via: dict[str, str] = {}
    todo = [start]
    while todo:
        here = todo.pop()
        for dep in graph.get(here, ()):
            if dep not in via and dep != start:
                via[dep] = here
                todo.append(dep)
    return via


def chain(via: dict[str, str], start: str, end: str) -> str:
    steps = [end]
    while steps[-1] != start:
        steps.append(via[steps[-1]])
    return " -> ".join(reversed(steps))


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_checker_sees_function_level_and_relative_imports_and_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .c import x\nimport os\n")
    (pkg / "sub" / "c.py").write_text("x = 1\n")
    graph = import_graph(tmp_path)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.sub.c"}
    assert find_cycle(graph) is None
    assert chain(reachable(graph, "pkg.a"), "pkg.a", "pkg.sub.c") == "pkg.a -> pkg.sub.b -> pkg.sub.c"
    (pkg / "sub" / "c.py").write_text("def g():\n    import pkg.a\n")
    assert find_cycle(import_graph(tmp_path)) == ["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]


def test_serving_imports_no_training_or_evaluation_code():
    service = ROOT / "serving" / "service.py"
    graph = import_graph(SRC, {"serving.service": service})
    serving = [m for m in graph if _under(m, SERVING) or m == "serving.service"]
    assert len(serving) > 10  # the ranking package was found
    direct = {m: sorted(d for d in graph[m] if _under(d, NOT_FOR_SERVING)) for m in serving}
    offenders = {m: d for m, d in direct.items() if d}
    assert not offenders, f"serving imports training or evaluation: {offenders}"
    for module in serving:
        via = reachable(graph, module)
        bad = sorted(m for m in via if _under(m, NOT_FOR_SERVING))
        assert not bad, f"serving reaches {bad[0]}: {chain(via, module, bad[0])}"


def test_shoprank_has_no_import_cycles():
    graph = import_graph(SRC)
    assert "shoprank.ranking.ranker" in graph and "shoprank.selection" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


MAX_LINES = 400  # a module a reader can hold in their head; past this, split it by responsibility


def test_every_module_is_short():
    lengths = {f.relative_to(ROOT): len(f.read_text().splitlines()) for f in project_files("*.py")}
    long = {str(f): n for f, n in lengths.items() if n >= MAX_LINES}
    assert not long, f"modules of {MAX_LINES} lines or more: {long}"
