"""The layout rules of the package, read from the source (no imports): no import cycles, no module importing from a
later stage of the data flow, and no CLI flag spelled outside the CLI.

space -> supernet -> importance -> train -> profile -> store -> surrogate -> optimize -> pareto (the measured fronts);
below them a ground floor (errors, metrics, families, the numpy Pareto core, model-card helpers, the machine's measured
matmul rate), and on top the drivers that join stages (the CLI, the speed checks, the RPD study, the baselines, the
report, the pipeline). The store is the DuckDB file that training and profiling write their rows into: it imports only
the space, so it sits beside the space and the stages before it may write to it; publishing a DB is the store's stage.
Every import counts: inside functions as much as at the top, and under ``if TYPE_CHECKING:`` as much as at run time (an
annotation that needs a module is a dependency on it, and a circle through one ties the modules as much as any
other). A name that a package loads on first use (its table for :func:`nasbench.lazy.lazy_getattr`) is an import of
the module that defines it wherever it is imported through the package: ``from nasbench.importance import run_rpd``
depends on the RPD study's module, not on the package's light names.

The library raises in its own words (a function argument, a config field: ``ppl_tokens``); the CLI maps them to its
flags (``--ppl-tokens``), so no ``--flag`` is spelled in a string outside ``nasbench/cli``.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "nasbench"

#: Stage of each module (longest dotted prefix wins).
STAGES = {
    "nasbench.errors": 0, "nasbench.metrics": 0, "nasbench.pareto": 0, "nasbench.cards": 0, "nasbench.families": 0,
    "nasbench.stats": 0, "nasbench.paths": 0, "nasbench.lazy": 0, "nasbench.allocator": 0, "nasbench.precision": 0,
    "nasbench.space": 1, "nasbench.data": 1, "nasbench.models": 1, "nasbench.perplexity": 1,
    "nasbench.supernet": 2,
    "nasbench.importance": 3,
    "nasbench.train": 4,
    "nasbench.profile": 5,
    "nasbench.store": 1,
    "nasbench.surrogate": 7,
    "nasbench.optimize": 8,
    "nasbench.pareto._measured": 9,
    "nasbench.cli": 10, "nasbench.__main__": 10, "nasbench.bench": 10, "nasbench.importance._rpd": 10,
    "nasbench.baselines": 10, "nasbench.report": 10, "nasbench.pipeline": 10,
}
#: Known exceptions, each a debt to pay off: an entry that no longer holds fails the test, so the list only shrinks.
ALLOWED_LATER: set[tuple[str, str]] = set()
ALLOWED_CYCLES: list[set[str]] = []
#: A CLI flag in a string literal: a quote, then ``--`` (Markdown rules and front-matter fences are built from
#: ``nasbench.cards.FENCE``, so no library string opens with two hyphens).
FLAG = re.compile(r"""["']--""")
#: What only the supernet reference (``nasbench/supernet/ref.py``) may define: the functions that turn a directory into
#: an id or an id into a directory, by any name, or take either as a parameter.
#: (Spelled in pieces, so that this file is no match of its own.)
RESOLVER = re.compile("|".join([r"def .*supernet_(i" + "d|dir)", "resolve_" + "supernet", "recorded_supernet" + "_id",
                                "WEIGHT_" + "VERBS"]))


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _statements(body: list[ast.AST]) -> Iterator[ast.AST]:
    """Every statement, nested ones too (an import is a statement: the expressions need no walk, which is most of
    the time ``ast.walk`` takes), those under ``if TYPE_CHECKING:`` included."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, field, []))


def _lazy_table(tree: ast.Module) -> dict[str, str]:
    """``{name: module}`` that a package's ``__getattr__ = lazy_getattr(__name__, TABLE)`` loads on first use: the
    table's expression evaluated over the module's own literal assignments (dicts, tuples, ``dict.fromkeys``,
    comprehensions), nothing imported."""
    scope: dict[str, object] = {"__builtins__": {}, "dict": dict}
    table = None
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        value = node.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "lazy_getattr":
            table = value.args[1]
            continue
        try:
            result = eval(compile(ast.Expression(value), "<layout>", "eval"), scope)
        except (NameError, AttributeError, TypeError):
            continue  # not a literal table (it names an import)
        scope.update({t.id: result for t in node.targets if isinstance(t, ast.Name)})
    if table is None:
        return {}
    return dict(eval(compile(ast.Expression(table), "<layout>", "eval"), scope))


def _bound_names(tree: ast.Module) -> set[str]:
    """The names a module binds at its top level (definitions, assignments, imports) or loads on first use."""
    names = set(_lazy_table(tree))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@functools.cache
def _trees() -> dict[str, ast.Module]:
    return {mod: ast.parse(path.read_text(encoding="utf-8")) for mod, path in _modules().items()}


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    trees = _trees()
    lazy = {mod: _lazy_table(tree) for mod, tree in trees.items() if mods[mod].name == "__init__.py"}

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    def resolve_from(base: str, name: str) -> str:
        target = resolve(f"{base}.{name}")
        while name in lazy.get(target, {}):  # a name the package loads on first use: the module that defines it
            target = resolve(lazy[target][name])
        return target

    edges: dict[str, set[str]] = {}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        found = set()
        for node in _statements(trees[mod].body):
            if isinstance(node, ast.Import):
                found.update(resolve(a.name) for a in node.names if a.name.startswith("nasbench"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                if base.startswith("nasbench"):
                    found.update(resolve_from(base, a.name) for a in node.names)
        found.discard(mod)
        found.discard("nasbench")  # the package root: the public API (and __version__)
        edges[mod] = found
    return edges


@functools.cache
def _graph() -> dict[str, set[str]]:
    """The import edges, parsed once for every test of this file (parsing is most of its time)."""
    return _imports(_modules())


def _stage(mod: str) -> int:
    keys = [k for k in STAGES if mod == k or mod.startswith(k + ".")]
    assert keys, f"{mod}: no stage in tests/integration/test_layout.py STAGES"
    return STAGES[max(keys, key=len)]


def test_lazy_names_name_a_module_that_binds_them():
    """Every name a package loads on first use is bound by the module its table names (a module moved or a name
    renamed breaks the table only when the name is first used, so the check is here)."""
    mods, trees = _modules(), _trees()
    stale = [f"{mod}.{name} -> {target}" for mod, tree in trees.items() if mods[mod].name == "__init__.py"
             for name, target in _lazy_table(tree).items()
             if target not in trees or name not in _bound_names(trees[target])]
    assert stale == []
    assert _lazy_table(trees["nasbench.pareto"])["measured_front"] == "nasbench.pareto._measured"


def test_no_module_imports_a_later_stage():
    later = {(m, t) for m, targets in _graph().items() if m != "nasbench" for t in targets if _stage(t) > _stage(m)}
    assert sorted(later - ALLOWED_LATER) == []
    assert sorted(ALLOWED_LATER - later) == []  # a debt paid off leaves the list


def test_stages_load_weights_through_the_supernet_reference():
    """Profiling and the baselines receive a SupernetRef and load through it: neither imports the training stage (a
    baseline that trains is handed the training function by whoever composes the stages)."""
    edges = _graph()
    into_train = sorted((m, t) for m, targets in edges.items() if m.startswith(("nasbench.profile", "nasbench.baselines"))
                        for t in targets if t == "nasbench.train" or t.startswith("nasbench.train."))
    assert into_train == []


def test_one_resolver_of_a_supernet():
    home = PACKAGE / "supernet" / "ref.py"
    found = [f"{path.relative_to(PACKAGE.parent)}:{i}: {line.strip()}"
             for root in (PACKAGE, PACKAGE.parent / "tests") for path in sorted(root.rglob("*.py"))
             if path != home
             for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if RESOLVER.search(line)]
    assert found == []


def test_no_import_cycles():
    edges = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(component)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert [c for c in cycles if c not in ALLOWED_CYCLES] == []
    assert [c for c in ALLOWED_CYCLES if c not in cycles] == []  # a debt paid off leaves the list


def test_the_cycle_check_sees_imports_under_type_checking():
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nasbench.space import SearchSpace\n"
    found = [n for n in _statements(ast.parse(source).body) if isinstance(n, ast.ImportFrom)]
    assert [n.module for n in found] == ["typing", "nasbench.space"]


def test_no_cli_flag_outside_the_cli():
    """The library's errors and messages name its own arguments; only ``nasbench/cli`` spells ``--flags`` (docstrings
    that document the CLI are prose: they may name a flag inside a sentence, never open a string with one)."""
    found = [f"{path.relative_to(PACKAGE.parent)}:{i}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) if "cli" not in path.relative_to(PACKAGE).parts[:1]
             for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if FLAG.search(line)]
    assert found == []
