"""The architecture rules of DESIGN.md ("Layout"), checked by parsing the source with ``ast``.

- No import cycles: "No module imports another that imports it back".
- ``workbench.track`` is the only module that imports mlflow, ``workbench.search`` the only one
  that imports optuna, and the model never imports ``torch.distributed``.
- Files and functions stay small.
- Loading the ablation axes does not import optuna (a subprocess, the one test that imports).

The import graph has a node per module under ``workbench/`` (a package's ``__init__.py`` is the
package's module) and an edge per import that executes: module level or inside a function,
``if TYPE_CHECKING:`` blocks excluded, ``importlib.import_module("workbench...")`` with a literal
string included. Importing ``workbench.a.b`` also runs ``workbench.a/__init__.py``, so it adds an
edge to every parent package too, except to the importer itself or one of its own ancestors (those
have already run by the time the importer runs) and except to the top-level ``workbench`` unless
its ``__init__`` imports something of the workbench.

``python tests/test_architecture.py`` prints the graph summary, every cycle and every violation.
"""

from __future__ import annotations

import ast
import functools
import itertools
import os
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "workbench"
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Import:
    """One executed import statement (or literal dynamic import) in a module.

    ``names`` are the absolute dotted names it may bring in: ``import a.b`` gives ``("a.b",)``,
    ``from a import b, c`` gives ``("a", "a.b", "a.c")`` (``a.b`` may be a module or a name).
    """

    importer: str
    path: Path
    line: int
    base: str  # the module named after ``import`` / ``from`` (absolute)
    members: tuple[str, ...] = ()  # the names after ``from ... import``
    dynamic: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.base, *(f"{self.base}.{m}" for m in self.members if m != "*"))

    @property
    def site(self) -> str:
        return f"{_rel(self.path)}:{self.line}"


@dataclass(frozen=True)
class Unresolved:
    """An import the graph cannot place: a computed dynamic import, or a workbench name that is
    no module (a deleted or mistyped module)."""

    importer: str
    site: str
    what: str


def _rel(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def discover_modules(root: Path = REPO / PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file for every ``.py`` under ``root`` (``__init__.py`` -> package)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if all(part.isidentifier() for part in parts) and (
            name not in modules or path.name == "__init__.py"  # a package shadows ``name.py``
        ):
            modules[name] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "string"`` assignments (to explain non-literal dynamic imports)."""
    constants: dict[str, str] = {}
    for stmt in tree.body:
        value = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            constants.update({t.id: value.value for t in targets if isinstance(t, ast.Name)})
    return constants


class _ImportCollector(ast.NodeVisitor):
    """Every import that executes in one module, absolute; TYPE_CHECKING blocks skipped."""

    def __init__(self, module: str, path: Path, is_package: bool, tree: ast.Module) -> None:
        self.module, self.path = module, path
        self.package = module if is_package else module.rpartition(".")[0]
        self.constants = _module_constants(tree)
        self.imports: list[Import] = []
        self.unresolved: list[Unresolved] = []
        self.attribute_uses: list[tuple[str, int]] = []  # ("torch.distributed", line)

    def _relative(self, level: int, name: str | None) -> str:
        parts = self.package.split(".") if self.package else []
        if level - 1 > len(parts):
            raise ValueError(f"{self.path}: relative import beyond the top-level package")
        base = ".".join(parts[: len(parts) - (level - 1)])
        return ".".join(p for p in (base, name) if p)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # the body never runs
            nodes: list[ast.AST] = [*node.orelse]
        elif (
            isinstance(node.test, ast.UnaryOp)
            and isinstance(node.test.op, ast.Not)
            and _is_type_checking(node.test.operand)
        ):  # ``if not TYPE_CHECKING:``: the else branch never runs
            nodes = [node.test, *node.body]
        else:
            nodes = [node.test, *node.body, *node.orelse]
        for child in nodes:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append(Import(self.module, self.path, node.lineno, alias.name))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._relative(node.level, node.module) if node.level else (node.module or "")
        members = tuple(alias.name for alias in node.names)
        self.imports.append(Import(self.module, self.path, node.lineno, base, members))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and (node.value.id, node.attr) == (
            "torch",
            "distributed",
        ):
            self.attribute_uses.append(("torch.distributed", node.lineno))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        is_dynamic = (
            isinstance(func, ast.Attribute)
            and func.attr == "import_module"
            and isinstance(func.value, ast.Name)
            and func.value.id == "importlib"
        ) or (isinstance(func, ast.Name) and func.id in {"import_module", "__import__"})
        if is_dynamic and node.args:
            self._dynamic(node)
        self.generic_visit(node)

    def _dynamic(self, node: ast.Call) -> None:
        arg = node.args[0]
        site = f"{_rel(self.path)}:{node.lineno}"
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            what = ast.unparse(arg)
            if isinstance(arg, ast.Name) and arg.id in self.constants:
                what += f" (= {self.constants[arg.id]!r}, not counted: not a literal)"
            self.unresolved.append(Unresolved(self.module, site, f"import_module({what})"))
            return
        name = arg.value
        if name.startswith("."):
            package = next((k.value for k in node.keywords if k.arg == "package"), None)
            if package is None and len(node.args) > 1:
                package = node.args[1]
            if isinstance(package, ast.Name) and package.id in {"__name__", "__package__"}:
                anchor = self.package
            elif isinstance(package, ast.Constant) and isinstance(package.value, str):
                anchor = package.value
            else:
                self.unresolved.append(Unresolved(self.module, site, ast.unparse(node)))
                return
            level = len(name) - len(name.lstrip("."))
            parts = anchor.split(".")
            name = ".".join([*parts[: len(parts) - (level - 1)], name.lstrip(".")]).strip(".")
        self.imports.append(Import(self.module, self.path, node.lineno, name, dynamic=True))


@dataclass
class ModuleInfo:
    name: str
    path: Path
    tree: ast.Module
    lines: int
    imports: list[Import]
    unresolved: list[Unresolved]
    attribute_uses: list[tuple[str, int]]


def parse_module(name: str, path: Path) -> ModuleInfo:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    collector = _ImportCollector(name, path, path.name == "__init__.py", tree)
    collector.visit(tree)
    return ModuleInfo(
        name,
        path,
        tree,
        len(text.splitlines()),
        collector.imports,
        collector.unresolved,
        collector.attribute_uses,
    )


# --------------------------------------------------------------------------- the graph


@dataclass
class ImportGraph:
    """``edges[a][b]``: the import sites (``file:line``) at which module ``a`` imports ``b``."""

    modules: dict[str, ModuleInfo]
    edges: dict[str, dict[str, list[str]]]
    unresolved: list[Unresolved] = field(default_factory=list)

    @property
    def adjacency(self) -> dict[str, set[str]]:
        return {a: set(targets) for a, targets in self.edges.items()}

    @property
    def n_edges(self) -> int:
        return sum(len(targets) for targets in self.edges.values())

    @functools.cached_property
    def cycles(self) -> list[list[str]]:
        return import_cycles(self.adjacency)

    def summary(self) -> str:
        return f"{len(self.modules)} modules, {self.n_edges} edges, {len(self.cycles)} cycles"

    def describe(self, cycle: list[str]) -> str:
        """``a -> b -> a`` and below it the ``file:line`` of every edge."""
        steps = [*cycle, cycle[0]]
        lines = [" -> ".join(steps)]
        for a, b in itertools.pairwise(steps):
            sites = self.edges[a][b]
            more = f" (+{len(sites) - 1} more)" if len(sites) > 1 else ""
            lines.append(f"    {a} -> {b}: {sites[0]}{more}")
        return "\n".join(lines)


def _parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        yield ".".join(parts[:i])


def resolve(imp: Import, modules: dict[str, ModuleInfo] | set[str]) -> list[str]:
    """The workbench modules an import names directly: ``from a import b`` gives ``a.b`` when that
    is a module, else ``a``; ``import a.b`` gives ``a.b``. Empty for outside modules."""
    if imp.base != PACKAGE and not imp.base.startswith(PACKAGE + "."):
        return []
    if not imp.members:
        return [imp.base]
    targets = [f"{imp.base}.{m}" for m in imp.members if f"{imp.base}.{m}" in modules]
    if any(f"{imp.base}.{m}" not in modules for m in imp.members):  # a name defined in ``base``
        targets.append(imp.base)
    return list(dict.fromkeys(targets))


def build_graph(modules: dict[str, ModuleInfo]) -> ImportGraph:
    edges: dict[str, dict[str, list[str]]] = {name: {} for name in modules}
    unresolved = [u for info in modules.values() for u in info.unresolved]

    def add(a: str, b: str, site: str) -> None:
        edges[a].setdefault(b, [])
        if site not in edges[a][b]:
            edges[a][b].append(site)

    top = modules.get(PACKAGE)
    top_imports_workbench = top is not None and any(resolve(i, modules) for i in top.imports)
    for info in modules.values():
        for imp in info.imports:
            for target in resolve(imp, modules):
                if target not in modules:
                    if not (REPO / Path(*target.split("."))).is_dir():  # not a namespace package
                        unresolved.append(Unresolved(info.name, imp.site, f"no module {target}"))
                    continue
                add(info.name, target, imp.site)
                own_ancestors = {info.name, *_parents(info.name)}
                for parent in _parents(target):
                    if parent in own_ancestors or parent not in modules:
                        continue
                    if parent == PACKAGE and not top_imports_workbench:
                        continue
                    add(info.name, parent, f"{imp.site} (runs the package {parent})")
    return ImportGraph(modules, edges, unresolved)


@functools.cache
def import_graph(root: Path = REPO / PACKAGE) -> ImportGraph:
    """The import graph of every module under ``root``; ``import_graph().summary()`` reads
    "N modules, M edges, K cycles"."""
    modules = {name: parse_module(name, path) for name, path in discover_modules(root).items()}
    return build_graph(modules)


# --------------------------------------------------------------------------- cycles


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit), in a deterministic order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    nodes = sorted(set(graph) | {b for targets in graph.values() for b in targets})
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _shortest_cycle_through(graph: dict[str, set[str]], start: str, allowed: set[str]):
    """The shortest path ``start -> ... -> start`` inside ``allowed`` (without the repeat)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for succ in sorted(graph.get(node, ())):
            if succ == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return path[::-1]
            if succ in allowed and succ not in seen:
                seen.add(succ)
                previous[succ] = node
                queue.append(succ)
    return None


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Readable cycles: for every strongly connected component with more than one module (or a
    module that imports itself), the shortest cycle through each of its members, each cycle once
    (rotated to start at its smallest name)."""
    cycles: list[list[str]] = []
    for component in strongly_connected_components(graph):
        members = set(component)
        if len(component) == 1 and component[0] not in graph.get(component[0], ()):
            continue
        for node in component:
            cycle = _shortest_cycle_through(graph, node, members)
            assert cycle is not None, f"{node} is in a component but on no cycle"
            first = cycle.index(min(cycle))
            cycle = cycle[first:] + cycle[:first]
            if cycle not in cycles:
                cycles.append(cycle)
    return cycles


# --------------------------------------------------------------------------- rules


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def importers_of(graph: ImportGraph, external: str) -> list[tuple[str, str, str]]:
    """(module, file:line, name) of every import of ``external`` or one of its submodules."""
    found = []
    for info in graph.modules.values():
        for imp in info.imports:
            names = [n for n in imp.names if _within(n, external)]
            if names:
                found.append((info.name, imp.site, names[-1]))
    return found


def import_rule_violations(graph: ImportGraph) -> dict[str, list[str]]:
    """Per rule, ``module (file:line) imports name`` for every offending import."""
    rules = {
        "optuna only in workbench.search": ("optuna", lambda m: _within(m, "workbench.search")),
        "mlflow only in workbench.track": ("mlflow", lambda m: _within(m, "workbench.track")),
        "the model never imports torch.distributed": (
            "torch.distributed",
            lambda m: not _within(m, "workbench.model"),
        ),
    }
    violations: dict[str, list[str]] = {}
    for rule, (external, allowed) in rules.items():
        found = [
            f"{module} ({site}) imports {name}"
            for module, site, name in importers_of(graph, external)
            if not allowed(module)
        ]
        if external == "torch.distributed":  # ``torch.distributed.x(...)`` after ``import torch``
            found += [
                f"{info.name} ({_rel(info.path)}:{line}) uses {what}"
                for info in graph.modules.values()
                if not allowed(info.name)
                for what, line in info.attribute_uses
            ]
        violations[rule] = found
    return violations


def size_violations(graph: ImportGraph) -> list[str]:
    offenders = []
    for info in graph.modules.values():
        rel = _rel(info.path)
        if info.lines > MAX_FILE_LINES:
            offenders.append(f"{rel}: {info.lines} lines (max {MAX_FILE_LINES})")
        for node in ast.walk(info.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    offenders.append(
                        f"{rel}:{node.lineno}: def {node.name} is {length} lines "
                        f"(max {MAX_FUNCTION_LINES})"
                    )
    return sorted(offenders)


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"  {item}" for item in items)


# --------------------------------------------------------------------------- tests


def test_import_graph_sees_the_package():
    graph = import_graph()
    assert {"workbench", "workbench.spec", "workbench.registry"} <= set(graph.modules)
    assert graph.n_edges > 0, graph.summary()
    print(graph.summary())


def test_no_import_cycles():
    graph = import_graph()
    print(graph.summary())
    if graph.cycles:
        pytest.fail(
            f"{graph.summary()}; DESIGN.md: no module imports another that imports it back.\n"
            + "\n".join(graph.describe(cycle) for cycle in graph.cycles),
            pytrace=False,
        )


def test_cycle_finder_finds_a_planted_cycle():
    acyclic = {"a": {"b", "c"}, "b": {"c"}, "c": {"d"}, "d": set()}
    assert import_cycles(acyclic) == []
    assert sorted(map(len, strongly_connected_components(acyclic))) == [1, 1, 1, 1]

    planted = {**acyclic, "d": {"b"}, "e": {"e"}, "f": {"a"}}  # b -> c -> d -> b; e -> e
    components = strongly_connected_components(planted)
    assert ["b", "c", "d"] in components and ["e"] in components and ["a"] in components
    assert import_cycles(planted) == [["b", "c", "d"], ["e"]]

    # Two cycles sharing a node, one component: a readable cycle through each member.
    figure_eight = {"x": {"y", "z"}, "y": {"x"}, "z": {"x"}}
    assert strongly_connected_components(figure_eight) == [["x", "y", "z"]]
    assert import_cycles(figure_eight) == [["x", "y"], ["x", "z"]]

    # A long chain: the iterative Tarjan needs no recursion.
    chain = {str(i): {str(i + 1)} for i in range(5000)} | {"5000": {"0"}}
    assert len(strongly_connected_components(chain)) == 1


def test_graph_resolves_imports_and_parent_packages(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("def f():\n    from workbench.a import b\n")
    (pkg / "a" / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import c\n"
        "from .c import thing\n"
        "if TYPE_CHECKING:\n"
        "    import workbench.d\n"
    )
    (pkg / "a" / "c.py").write_text("import importlib\nimportlib.import_module('workbench.d')\n")
    (pkg / "d.py").write_text("from workbench.a.b import x\n")
    modules = {name: parse_module(name, path) for name, path in discover_modules(pkg).items()}
    edges = {a: set(bs) for a, bs in build_graph(modules).edges.items()}
    assert edges == {
        "workbench": set(),
        "workbench.a": {"workbench.a.b"},  # inside a function; no self-edge to its own package
        "workbench.a.b": {"workbench.a.c"},  # TYPE_CHECKING skipped; own package not an edge
        "workbench.a.c": {"workbench.d"},  # literal dynamic import
        "workbench.d": {"workbench.a.b", "workbench.a"},  # parent package, not ``workbench``
    }
    assert import_cycles(edges) == [
        ["workbench.a", "workbench.a.b", "workbench.a.c", "workbench.d"],
        ["workbench.a.b", "workbench.a.c", "workbench.d"],
    ]


def test_optuna_only_in_search():
    found = import_rule_violations(import_graph())["optuna only in workbench.search"]
    if found:
        pytest.fail(
            "optuna is imported outside workbench.search:\n" + _bullets(found), pytrace=False
        )


def test_mlflow_only_in_track():
    found = import_rule_violations(import_graph())["mlflow only in workbench.track"]
    if found:
        pytest.fail(
            "mlflow is imported outside workbench.track:\n" + _bullets(found), pytrace=False
        )


def test_model_never_imports_torch_distributed():
    found = import_rule_violations(import_graph())["the model never imports torch.distributed"]
    if found:
        pytest.fail(
            "workbench.model imports torch.distributed (parallelism belongs in workbench.train):\n"
            + _bullets(found),
            pytrace=False,
        )


def test_files_and_functions_stay_small():
    offenders = size_violations(import_graph())
    if offenders:
        pytest.fail(
            f"files over {MAX_FILE_LINES} lines or functions over {MAX_FUNCTION_LINES} lines:\n"
            + _bullets(offenders),
            pytrace=False,
        )


LOAD_AXES = textwrap.dedent(
    """
    import sys, traceback

    class _WhoImportsOptuna:  # records the import chain that first reaches optuna
        chain = None

        def find_spec(self, name, path=None, target=None):
            if name == "optuna" and _WhoImportsOptuna.chain is None:
                _WhoImportsOptuna.chain = [
                    f"{f.filename}:{f.lineno} {f.line}"
                    for f in traceback.extract_stack()
                    if "importlib._bootstrap" not in f.filename and f.filename != "<string>"
                ]
            return None

    sys.meta_path.insert(0, _WhoImportsOptuna())

    from workbench.axes import load_ablations
    load_ablations()
    import sys
    assert "optuna" not in sys.modules, "optuna imported via:\\n" + "\\n".join(
        _WhoImportsOptuna.chain or ["?"]
    )
    """
)


def test_loading_axes_does_not_import_optuna(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AXES],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(
            "`from workbench.axes import load_ablations; load_ablations()` imports optuna "
            f"(or fails):\n{result.stdout}{result.stderr}",
            pytrace=False,
        )


# --------------------------------------------------------------------------- report


def report(graph: ImportGraph) -> str:
    out = [graph.summary()]
    if graph.cycles:
        out.append(f"\ncycles ({len(graph.cycles)}):")
        out += [graph.describe(cycle) for cycle in graph.cycles]
    components = [c for c in strongly_connected_components(graph.adjacency) if len(c) > 1]
    if components:
        out.append(f"\nstrongly connected components ({len(components)}):")
        out += [f"  {len(c)} modules: {', '.join(c)}" for c in components]
    for rule, found in import_rule_violations(graph).items():
        out.append(f"\n{rule}: " + ("ok" if not found else f"{len(found)} violations"))
        out += [f"  {item}" for item in found]
    sizes = size_violations(graph)
    out.append(
        f"\nfiles <= {MAX_FILE_LINES} lines, functions <= {MAX_FUNCTION_LINES} lines: "
        + ("ok" if not sizes else f"{len(sizes)} offenders")
    )
    out += [f"  {item}" for item in sizes]
    if graph.unresolved:
        out.append("\nimports not in the graph (check by hand):")
        out += [f"  {u.importer} ({u.site}): {u.what}" for u in graph.unresolved]
    return "\n".join(out)


def all_ok(graph: ImportGraph) -> bool:
    rules = import_rule_violations(graph).values()
    return not graph.cycles and not any(rules) and not size_violations(graph)


if __name__ == "__main__":
    graph = import_graph()
    print(report(graph))
    sys.exit(0 if all_ok(graph) else 1)
