"""The server package has no import cycles, counting imports inside functions and TYPE_CHECKING.

Data flows one way (ingest → bus → live | archive → sessions → web), and so do imports: a module
never imports one that imports it back, directly or through others. Every `import` statement
counts, wherever it is, because an import hidden in a function or a type-checking block is
still a dependency, just one that fails later and harder to read.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "streamdom"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name → file of every module of the package at `root`."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports, anywhere in its source."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1 more
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_pkg else 0)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
                sub = f"{base_name}.{alias.name}"
                found.add(sub if sub in modules else base_name)
    out = set()
    for target in found:
        # Importing a.b.c runs a/__init__ and a/b/__init__ first: those are imports too.
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            dotted = ".".join(parts[:i])
            if dotted in modules and dotted != name:
                out.add(dotted)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph(PKG)
    assert "streamdom.cli" in graph and graph["streamdom.cli"], "the graph was read"
    assert cycles(graph) == []


def test_the_check_sees_cycles_through_functions_type_checking_and_packages(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.c import C\n")  # a re-export
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n")
    (pkg / "sub" / "c.py").write_text("from . import d\nC = 1\n")
    (pkg / "sub" / "d.py").write_text("import pkg.sub\n")
    (pkg / "e.py").write_text("from pkg.sub import c\n")
    found = cycles(import_graph(pkg))
    assert sorted(found) == [["pkg.a", "pkg.b"], ["pkg.sub", "pkg.sub.c", "pkg.sub.d"]]
