"""The shape of src/datarl, checked from the source text alone (stdlib ``ast``; no datarl module is imported).

Two rules (issue 16, item 7):

1. No import cycles between datarl modules.

   The graph has one node per module file (``datarl.executors`` is ``src/datarl/executors/__init__.py``)
   and one edge per import statement, wherever it stands: at module level, inside a function or method,
   inside ``try``. A function-level import is still a circle; it only hides it from the import-time
   error. Imports under ``if TYPE_CHECKING:`` (``typing.TYPE_CHECKING`` too) do not count: they never run.
   How an import becomes an edge:
   - ``import datarl.a.b`` -> ``datarl.a.b``;
   - ``from datarl.a import b`` -> ``datarl.a.b`` when ``b`` is a submodule file, else ``datarl.a``;
   - relative imports are resolved against the importing module (``from . import x`` in a package's
     ``__init__`` means a submodule of that package);
   - only the module named is an edge, not its parent packages. Python does run ``datarl/a/__init__.py``
     before ``datarl.a.b``, but counting that would turn every package whose ``__init__`` re-exports from
     its submodules into a circle with each of them (``sandbox/__init__`` imports ``sandbox.check``, which
     imports ``sandbox.pool``); a re-exporting ``__init__`` is not a cycle by itself.
   - a submodule that names its own package (``from datarl.executors import WorkerPool`` inside
     ``datarl/executors/local.py``) while that package's ``__init__`` imports the submodule IS counted: it is
     a real circle (whichever of the two is imported first sees the other half-initialised).
   - ``importlib.import_module("...")`` with a string (the reward router's registry) is not an edge: a
     runtime lookup, not part of the static shape.
   A failure lists each strongly connected component of more than one module and every simple cycle in
   it, with the file, line, enclosing function and text of each import statement that forms it.

2. No module uses another module's private names.

   Flagged: ``from datarl.x import _y`` (relative forms too, under ``TYPE_CHECKING`` too: a private name is
   private in an annotation as well) and ``m._y`` where ``m`` is bound to a datarl module by an import in
   scope (``import datarl.x as m``, ``from datarl import x``, ``import datarl.x`` then ``datarl.x._y``),
   read or assigned (function parameters shadow module aliases). A private module ``datarl.a._b`` is private
   to its package: imported from outside ``datarl.a`` it is flagged. Dunder names (``__version__``,
   ``__all__``) are not private. A module's use of its own private names is not flagged. Not covered:
   ``getattr(m, "_y")``, aliases reassigned or passed around as values.
   ``ALLOWED_PRIVATE`` lists the pairs of files that are one program; each entry has a reason, and an entry
   that no longer matches anything fails the check too (so the list cannot rot).

Both checks run on every test run (the house refactor of issue 16 removed the three circles and the
private imports they found); a new circle or private import fails ``make test`` with its file and line.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "datarl"

# (importing module, module whose private names it uses) -> why the two files are one program
# Empty since session 11: zygote.py (sent to the child with namespaces.py as one source text) now uses
# namespaces.py's primitives by their public names.
ALLOWED_PRIVATE: dict[tuple[str, str], str] = {}


# ------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class ImportEdge:
    importer: str  # module name
    target: str  # module name
    path: Path
    line: int
    scope: str  # "<module>" or the enclosing function's qualified name
    text: str  # the import statement, one line
    type_checking: bool  # under ``if TYPE_CHECKING:``

    def where(self, root: Path) -> str:
        return f"{_rel(self.path, root)}:{self.line}"


@dataclass(frozen=True)
class PrivateUse:
    importer: str
    owner: str  # the module whose private name is used
    name: str
    path: Path
    line: int
    kind: str  # "from-import", "attribute" or "module" (a private module imported from outside its package)
    text: str

    def where(self, root: Path) -> str:
        return f"{_rel(self.path, root)}:{self.line}"


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def find_modules(src: Path, package: str) -> dict[str, Path]:
    """Every module file of ``package`` under ``src``: dotted name -> path (a package is its ``__init__``)."""
    modules: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ModuleReader(ast.NodeVisitor):
    """Walks one module: import edges (with scope and TYPE_CHECKING flag) and private-name uses."""

    def __init__(self, module: str, path: Path, modules: dict[str, Path], package: str) -> None:
        self.module, self.path, self.modules, self.package = module, path, modules, package
        self.is_pkg = path.name == "__init__.py"
        self.edges: list[ImportEdge] = []
        self.private: list[PrivateUse] = []
        self.scope: list[str] = []
        self.type_checking = 0
        self.aliases: list[dict[str, str | None]] = [{}]  # name -> datarl module (None: shadowed), per scope

    # -- resolution

    def _absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = self.module if self.is_pkg else self.module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        return f"{base}.{node.module}" if node.module else base

    def _ours(self, name: str) -> bool:
        return name == self.package or name.startswith(self.package + ".")

    def _bind(self, node: ast.Import | ast.ImportFrom, into: dict[str, str | None]) -> None:
        """Record the names an import statement binds to datarl modules (not to functions or classes)."""
        if isinstance(node, ast.Import):
            for a in node.names:
                if not self._ours(a.name):
                    continue
                if a.asname:
                    if a.name in self.modules:
                        into[a.asname] = a.name
                elif self.package in self.modules:  # ``import datarl.a.b`` binds ``datarl``
                    into[self.package] = self.package
            return
        base = self._absolute(node)
        if self._ours(base):
            for a in node.names:
                if f"{base}.{a.name}" in self.modules:
                    into[a.asname or a.name] = f"{base}.{a.name}"

    # -- scopes

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda, name: str) -> None:
        # decorators, defaults, annotations and bases are evaluated in the enclosing scope
        if isinstance(node, ast.Lambda):
            outer: list[ast.AST] = [node.args]
            inner: list[ast.AST] = [node.body]
        elif isinstance(node, ast.ClassDef):
            outer = [*node.decorator_list, *node.bases, *node.keywords]
            inner = list(node.body)
        else:
            outer = [*node.decorator_list, node.args, *([node.returns] if node.returns else [])]
            inner = list(node.body)
        for child in outer:
            self.visit(child)
        self.scope.append(name)
        own: dict[str, str | None] = {}
        if not isinstance(node, ast.ClassDef):  # parameters shadow module aliases of the enclosing scopes
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, [a.vararg, a.kwarg])]:
                own[arg.arg] = None
        for child in inner:  # a function-level import binds its name for the whole function
            for sub in _own_imports(child):
                self._bind(sub, own)
        self.aliases.append(own)
        for child in inner:
            self.visit(child)
        self.aliases.pop()
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scoped(node, "<lambda>")

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.type_checking += 1
            for stmt in node.body:
                self.visit(stmt)
            self.type_checking -= 1
            for stmt in node.orelse:
                self.visit(stmt)
        else:
            self.generic_visit(node)

    # -- imports

    def _edge(self, node: ast.stmt, target: str) -> None:
        if target != self.module:
            self.edges.append(
                ImportEdge(
                    self.module,
                    target,
                    self.path,
                    node.lineno,
                    ".".join(self.scope) or "<module>",
                    ast.unparse(node),
                    self.type_checking > 0,
                )
            )

    def _private_module(self, node: ast.stmt, dotted: str) -> None:
        """A private module (``datarl.a._b``) is private to its package ``datarl.a``: flagged when imported
        from outside that package."""
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            parent = ".".join(parts[:i])
            if i and is_private(part) and not (self.module == parent or self.module.startswith(parent + ".")):
                use = PrivateUse(self.module, parent, part, self.path, node.lineno, "module", ast.unparse(node))
                if use not in self.private:
                    self.private.append(use)
                return

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if self._ours(a.name):
                if a.name in self.modules:  # not a namespace package (``datarl.rl`` has no __init__)
                    self._edge(node, a.name)
                self._private_module(node, a.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node)
        if not self._ours(base):
            return
        owner = base if base in self.modules else None  # None: a namespace package, no file to import
        targets: list[str] = []  # one edge per statement and target, however many names it imports
        for a in node.names:
            sub = f"{base}.{a.name}"
            if sub in self.modules:
                targets.append(sub)
                self._private_module(node, sub)
                continue
            if owner is not None:
                targets.append(owner)
            self._private_module(node, base)
            if is_private(a.name) and owner != self.module:
                self.private.append(
                    PrivateUse(
                        self.module, owner or base, a.name, self.path, node.lineno, "from-import", ast.unparse(node)
                    )
                )
        for target in dict.fromkeys(targets):
            self._edge(node, target)

    # -- attribute access on module aliases

    def _lookup(self, name: str) -> str | None:
        for scope in reversed(self.aliases):
            if name in scope:
                return scope[name]
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain: list[str] = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and (module := self._lookup(value.id)) is not None:
            chain.reverse()
            for attr in chain:
                if is_private(attr):
                    if module != self.module:
                        self.private.append(
                            PrivateUse(
                                self.module, module, attr, self.path, node.lineno, "attribute", ast.unparse(node)
                            )
                        )
                    break
                if f"{module}.{attr}" not in self.modules:
                    break
                module = f"{module}.{attr}"
            return  # the whole chain is handled here; its inner Attribute nodes are not visited again
        self.generic_visit(node)


def _own_imports(node: ast.AST):
    """The import statements in ``node`` that bind in its scope: nested functions, lambdas and classes are
    not entered."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            yield from _own_imports(child)


def read_package(src: Path, package: str) -> tuple[list[ImportEdge], list[PrivateUse]]:
    modules = find_modules(src, package)
    edges: list[ImportEdge] = []
    private: list[PrivateUse] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        reader = _ModuleReader(module, path, modules, package)
        for sub in _own_imports(tree):  # module-level bindings are visible everywhere in the file
            reader._bind(sub, reader.aliases[0])
        reader.visit(tree)
        edges += reader.edges
        private += reader.private
    return edges, private


# ------------------------------------------------------------------------------------------ cycles


def import_graph(edges: list[ImportEdge]) -> dict[str, dict[str, list[ImportEdge]]]:
    """importer -> target -> the import statements (TYPE_CHECKING-only imports left out)."""
    graph: dict[str, dict[str, list[ImportEdge]]] = {}
    for e in edges:
        if not e.type_checking:
            graph.setdefault(e.importer, {}).setdefault(e.target, []).append(e)
    return graph


def strongly_connected(graph: dict[str, dict[str, list[ImportEdge]]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components of more than one module, each sorted, in sorted order."""
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return sorted(out)


def simple_cycles(
    graph: dict[str, dict[str, list[ImportEdge]]], component: list[str], limit: int = 100
) -> list[list[str]]:
    """Every simple cycle inside one component (at most ``limit``), each starting at its smallest module."""
    members = set(component)
    cycles: list[list[str]] = []

    def extend(path: list[str]) -> None:  # path[0] is the cycle's smallest module
        for nxt in sorted(graph.get(path[-1], {})):
            if len(cycles) >= limit or nxt not in members or nxt < path[0]:
                continue
            if nxt == path[0]:
                cycles.append(list(path))
            elif nxt not in path:
                extend(path + [nxt])

    for start in component:  # sorted: a cycle is found once, from its smallest module
        extend([start])
    return sorted(cycles, key=lambda c: (len(c), c))


def describe_cycles(graph: dict[str, dict[str, list[ImportEdge]]], root: Path, limit: int = 100) -> list[str]:
    """One text block per component of more than one module: its simple cycles and the import statements
    (file:line, enclosing function, statement) that form each step."""
    blocks = []
    for n, component in enumerate(strongly_connected(graph), 1):
        cycles = simple_cycles(graph, component, limit)
        lines = [
            f"component {n}: {len(component)} modules, {len(cycles)}"
            f"{'+' if len(cycles) >= limit else ''} simple cycle(s): {', '.join(component)}"
        ]
        for cycle in cycles:
            lines.append("  cycle: " + " -> ".join(cycle + [cycle[0]]))
            for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
                for e in graph[a][b]:
                    lines.append(f"    {e.where(root)}: {a} -> {b}  [in {e.scope}]  {e.text}")
        blocks.append("\n".join(lines))
    return blocks


# ------------------------------------------------------------------------------------------ private names


def private_violations(
    uses: list[PrivateUse], allowed: dict[tuple[str, str], str], root: Path
) -> tuple[list[str], list[str]]:
    """(one line per statement or expression that uses another module's private names without an allow-list
    entry, one line per allow-list entry that matches nothing)."""
    used: set[tuple[str, str]] = set()
    grouped: dict[tuple[str, int, str, str, str, str], list[str]] = {}
    for u in uses:
        if (u.importer, u.owner) in allowed:
            used.add((u.importer, u.owner))
            continue
        key = (u.where(root), u.line, u.importer, u.owner, u.kind, u.text if u.kind != "from-import" else "")
        grouped.setdefault(key, []).append(u.name)
    bad = [
        f"{where}: {importer} uses {owner}: {', '.join(names)} ({kind}){'  ' + text if text else ''}"
        for (where, _, importer, owner, kind, text), names in sorted(grouped.items(), key=lambda kv: kv[0][:2])
    ]
    stale = [
        f"{importer} -> {owner}: allow-list entry matches nothing ({reason})"
        for (importer, owner), reason in sorted(allowed.items())
        if (importer, owner) not in used
    ]
    return bad, stale


# ------------------------------------------------------------------------------------------ the checks


@functools.lru_cache(maxsize=1)
def _real_tree() -> tuple[list[ImportEdge], list[PrivateUse]]:
    return read_package(SRC, PACKAGE)


def test_no_import_cycles() -> None:
    edges, _ = _real_tree()
    blocks = describe_cycles(import_graph(edges), SRC)
    assert not blocks, (
        f"{len(blocks)} import cycle component(s) in src/{PACKAGE} (an import inside a function "
        "is still a circle; move the shared code down a layer):\n" + "\n".join(blocks)
    )


def test_no_private_names_across_modules() -> None:
    _, uses = _real_tree()
    bad, stale = private_violations(uses, ALLOWED_PRIVATE, SRC)
    message = []
    if bad:
        names = sum((u.importer, u.owner) not in ALLOWED_PRIVATE for u in uses)
        message.append(
            f"{len(bad)} statement(s) using {names} private name(s) of another module in src/{PACKAGE} "
            "(make them public, or move them where both can import them):\n  " + "\n  ".join(bad)
        )
    if stale:
        message.append("stale ALLOWED_PRIVATE entries (remove them):\n  " + "\n  ".join(stale))
    assert not message, "\n".join(message)


def test_allow_list_entries_name_real_modules() -> None:
    """The allow-list must keep naming files that exist, with a reason."""
    modules = find_modules(SRC, PACKAGE)
    for (importer, owner), reason in ALLOWED_PRIVATE.items():
        assert importer in modules and owner in modules, (importer, owner)
        assert reason.strip()


def test_checker_reads_the_real_tree() -> None:
    """A broken reader (finding nothing) would make the two checks above pass vacuously."""
    modules = find_modules(SRC, PACKAGE)
    edges, _ = _real_tree()
    assert len(modules) > 50 and "datarl.executors" in modules and "datarl.rl.trainer" in modules
    targets = {(e.importer, e.target) for e in edges}
    assert ("datarl.scoring", "datarl.executors.engine") in targets  # from datarl.executors.engine import ...
    assert ("datarl.cli.serving", "datarl.cli.common") in targets  # from .common import ...


# ------------------------------------------------------------------------------------------ the checker itself

SYNTHETIC = {
    # a package __init__ re-exporting from its submodule: not a cycle by itself
    "pkg/__init__.py": "from pkg.a import A\n__version__ = '1'\n",
    # 2-cycle a <-> b, hidden by a function-level import in a
    "pkg/a.py": "A = 1\n_hidden = 2\n\ndef f():\n    from pkg import b\n    return b\n",
    "pkg/b.py": "import pkg.a\n",
    # 3-cycle x -> y -> z -> x through relative imports (``from . import y`` is the submodule y)
    "pkg/sub/__init__.py": "",
    "pkg/sub/x.py": "from . import y\n_y = 0\n",
    "pkg/sub/y.py": "from .z import Z\n",
    "pkg/sub/z.py": "Z = 1\n\n\nclass K:\n    def m(self):\n        from ..sub import x\n        return x\n",
    # TYPE_CHECKING imports do not count (typing.TYPE_CHECKING either); the else branch does
    "pkg/c.py": (
        "import typing\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import D\n"
        "if typing.TYPE_CHECKING:\n    import pkg.d\nelse:\n    import pkg.e\nC = 1\n"
    ),
    "pkg/d.py": "from pkg.c import C\nD = 1\n",
    "pkg/e.py": "",
    # a submodule naming its own package whose __init__ imports it: counted
    "pkg/h/__init__.py": "from pkg.h.i import I\n",
    "pkg/h/i.py": "import pkg.h\nI = 1\n",
    # a namespace package (no __init__, like datarl/rl): its modules are nodes, the directory is not
    "pkg/ns/mod.py": "",
    "pkg/uses_ns.py": "import pkg.ns.mod\nfrom pkg.ns import mod as m2\n",
    # private names: from-import, aliased module attribute, dotted attribute, read and write; dunder is fine
    "pkg/p.py": (
        "from pkg.a import _hidden, A\nfrom pkg import __version__\nimport pkg.sub.x as xm\n"
        "import pkg.sub.x\n\n\ndef g():\n    from pkg import a\n    a._hidden = xm._y\n"
        "    return pkg.sub.x._y, a.A, a.__name__\n\n\ndef unrelated(a):\n    return a._hidden\n"
    ),
    # a parameter shadows a module-level alias
    "pkg/s.py": "from pkg import a\n\n\ndef f(a):\n    return a._hidden\n\n\ndef g():\n    return a._hidden\n",
    # allow-listed pair
    "pkg/q.py": "from pkg.r import _shared\n",
    "pkg/r.py": "_shared = 1\n_own = _shared\n",
    # a private module is private to its package
    "pkg/sub/_impl.py": "V = 1\n",
    "pkg/sub/w.py": "from pkg.sub._impl import V\n",
    "pkg/outside.py": "from pkg.sub import _impl\n",
}


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    for rel, text in SYNTHETIC.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_checker_finds_each_kind_of_cycle(synthetic: Path) -> None:
    edges, _ = read_package(synthetic, "pkg")
    graph = import_graph(edges)
    components = strongly_connected(graph)
    assert components == [["pkg.a", "pkg.b"], ["pkg.h", "pkg.h.i"], ["pkg.sub.x", "pkg.sub.y", "pkg.sub.z"]]
    assert [simple_cycles(graph, c) for c in components] == [
        [["pkg.a", "pkg.b"]],
        [["pkg.h", "pkg.h.i"]],
        [["pkg.sub.x", "pkg.sub.y", "pkg.sub.z"]],
    ]
    # TYPE_CHECKING imports are read but left out of the graph; the else branch is an edge
    assert {(e.target, e.type_checking) for e in edges if e.importer == "pkg.c"} == {("pkg.d", True), ("pkg.e", False)}
    assert "pkg.d" not in graph.get("pkg.c", {})
    assert {(e.target, e.line) for e in edges if e.importer == "pkg.uses_ns"} == {("pkg.ns.mod", 1), ("pkg.ns.mod", 2)}
    assert {e.target for e in edges if e.importer == "pkg"} == {"pkg.a"}  # the re-export, no cycle
    text = "\n".join(describe_cycles(graph, synthetic))
    assert "cycle: pkg.a -> pkg.b -> pkg.a" in text
    assert "pkg/a.py:5: pkg.a -> pkg.b  [in f]  from pkg import b" in text
    assert "pkg/b.py:1: pkg.b -> pkg.a  [in <module>]  import pkg.a" in text
    assert "cycle: pkg.sub.x -> pkg.sub.y -> pkg.sub.z -> pkg.sub.x" in text
    assert "pkg/sub/z.py:6: pkg.sub.z -> pkg.sub.x  [in K.m]  from ..sub import x" in text
    assert "pkg/sub/x.py:1: pkg.sub.x -> pkg.sub.y  [in <module>]  from . import y" in text


def test_simple_cycles_lists_every_circle_of_a_component() -> None:
    def e(a: str, b: str) -> ImportEdge:
        return ImportEdge(a, b, Path(a), 1, "<module>", "", False)

    graph = import_graph([e("a", "b"), e("b", "a"), e("b", "c"), e("c", "a"), e("c", "d")])
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert simple_cycles(graph, ["a", "b", "c"]) == [["a", "b"], ["a", "b", "c"]]


def test_checker_finds_private_names(synthetic: Path) -> None:
    _, uses = read_package(synthetic, "pkg")
    found = sorted((u.importer, u.owner, u.name, u.line, u.kind) for u in uses)
    assert found == [
        ("pkg.outside", "pkg.sub", "_impl", 1, "module"),
        ("pkg.p", "pkg.a", "_hidden", 1, "from-import"),
        ("pkg.p", "pkg.a", "_hidden", 9, "attribute"),  # a._hidden = ... (a bound by the function's import)
        ("pkg.p", "pkg.sub.x", "_y", 9, "attribute"),  # xm._y
        ("pkg.p", "pkg.sub.x", "_y", 10, "attribute"),  # pkg.sub.x._y
        ("pkg.q", "pkg.r", "_shared", 1, "from-import"),
        ("pkg.s", "pkg.a", "_hidden", 9, "attribute"),
    ]  # not: __version__, a.__name__, r's own _shared, parameters named a, w's sibling _impl
    allowed = {("pkg.q", "pkg.r"): "one program", ("pkg.gone", "pkg.r"): "was one program"}
    bad, stale = private_violations(uses, allowed, synthetic)
    assert len(bad) == 6 and not any("pkg.q" in line for line in bad)
    assert any(line.endswith("/pkg/p.py:1: pkg.p uses pkg.a: _hidden (from-import)") for line in bad)
    assert any(line.endswith("/pkg/p.py:10: pkg.p uses pkg.sub.x: _y (attribute)  pkg.sub.x._y") for line in bad)
    assert any(
        line.endswith("/pkg/outside.py:1: pkg.outside uses pkg.sub: _impl (module)  from pkg.sub import _impl")
        for line in bad
    )
    assert stale == ["pkg.gone -> pkg.r: allow-list entry matches nothing (was one program)"]
