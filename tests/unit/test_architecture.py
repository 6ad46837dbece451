"""The arrows of DESIGN.md ("Architecture: ports and adapters"), enforced on the imports of src/.

Dependencies point inwards: the domain imports nothing but itself and the standard library;
adapters (``lightning``, ``store``) know the domain only; use cases (``services``) use the
domain and the ports; entry points (``api``, ``workers``, the CLI) call the use cases; nothing
imports an entry point but the process that runs it. Every import counts: at module level, in a
function or under ``TYPE_CHECKING`` (a type is a dependency too). And no module of src/ is part
of an import cycle.

Use cases open their own transactions, so no entry point holds one: nothing in ``api``,
``workers`` or the CLI takes a ``Tx`` (no ``lambda tx:`` closures handed to a unit of work).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import lngate

SRC = Path(lngate.__file__).parent

# Layer of a module: its first name under lngate (``lngate.api.app`` -> ``api``).
# What each layer may import, besides itself, the standard library and third-party packages.
ALLOWED: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "lightning": frozenset({"domain"}),
    "store": frozenset({"domain"}),
    "config": frozenset({"domain"}),
    "security": frozenset({"domain", "store"}),  # the replay guard keeps nonces in the database
    "crashpoints": frozenset(),
    "logs": frozenset(),
    "metrics": frozenset(),
    "services": frozenset({"domain", "lightning", "store", "config", "security", "crashpoints"}),
    # Workers and routes are given their use cases (built in bootstrap) and call only those.
    "workers": frozenset({"services", "domain", "lightning", "crashpoints"}),
    "api": frozenset({"services", "domain", "security", "metrics", "logs", "bootstrap", "web"}),
    "client": frozenset({"security"}),  # the Python client signs requests as the API checks them
    # The composition root knows every adapter; the processes and the CLI are built on it.
    "bootstrap": frozenset(
        {"config", "domain", "lightning", "store", "security", "metrics", "services"}
    ),
    "server": frozenset(
        {"api", "bootstrap", "config", "logs", "processes", "services", "store", "workers"}
    ),
    "processes": frozenset({"bootstrap", "config", "services", "store", "server"}),
    "cli_support": frozenset({"config", "domain"}),
    "cli": frozenset(
        {
            "bench",
            "bootstrap",
            "cli_support",
            "domain",
            "lightning",
            "logs",
            "processes",
            "regtest",
            "server",
            "services",
            "treasury_cli",
            "merchant_cli",
        }
    ),
    "merchant_cli": frozenset({"bootstrap", "cli_support", "domain", "services"}),
    # The server-rendered pages are routes too: they call use cases and render their records.
    "web": frozenset({"services", "domain"}),
    "treasury_cli": frozenset({"bootstrap", "cli_support", "domain", "lightning", "workers"}),
    "bench": frozenset(
        {"bootstrap", "client", "config", "domain", "lightning", "services", "store", "workers"}
    ),
    "regtest": frozenset({"config", "domain", "lightning"}),
}
# Nobody imports these but the process entry points named in ALLOWED.
ENTRY_POINTS = frozenset(
    {"api", "web", "workers", "server", "cli", "treasury_cli", "merchant_cli", "processes"}
)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lngate"


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The lngate modules ``path`` imports (a name imported from a package counts as its
    module when it is one, else as the package)."""

    def resolve(name: str) -> str:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("lngate.") or name == "lngate":
                yield resolve(name)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: set(imports(p, known)) - {m, "lngate"} for m, p in known.items()}


def crossings() -> set[tuple[str, str]]:
    found = set()
    for module, targets in graph().items():
        for target in targets:
            source_layer, target_layer = layer(module), layer(target)
            if source_layer == target_layer:
                continue
            if source_layer not in ALLOWED:
                found.add((module, f"{target} (layer {source_layer!r} is not in ALLOWED)"))
            elif target_layer not in ALLOWED[source_layer]:
                found.add((module, target))
    return found


def test_every_layer_imports_only_what_the_design_allows() -> None:
    assert sorted(crossings()) == []


def test_no_entry_point_is_imported_by_the_layers_it_calls() -> None:
    inward = {"domain", "lightning", "store", "services", "security", "config", "bootstrap"}
    offenders = [
        (module, target)
        for module, targets in graph().items()
        for target in targets
        if layer(module) in inward and layer(target) in ENTRY_POINTS
    ]
    assert offenders == []


def test_no_entry_point_holds_a_transaction() -> None:
    """A function of an entry point with a parameter named ``tx`` (or a ``lambda tx``) would be
    deciding what runs in a transaction: that is a use case's job."""
    offenders = []
    for path in entry_point_files():
        for node in ast.walk(ast.parse(path.read_text())):
            functions = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            if isinstance(node, functions) and any(a.arg in {"tx", "t"} for a in node.args.args):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


def entry_point_files() -> list[Path]:
    return [
        path for module, path in modules().items() if layer(module) in ENTRY_POINTS - {"processes"}
    ]


def test_the_domain_imports_only_the_standard_library_and_itself() -> None:
    offenders = []
    for path in (SRC / "domain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.startswith("lngate.domain") or name == "__future__":
                    continue
                if name.split(".")[0] not in sys.stdlib_module_names:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_no_module_is_part_of_an_import_cycle() -> None:
    edges = graph()
    cycles = [sorted(c) for c in strongly_connected(edges) if len(c) > 1]
    assert cycles == []


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is small, but recursion depth is not ours)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                components.append(component)
    return components


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(sorted(c) for c in strongly_connected(edges) if len(c) > 1) == [["a", "b", "c"]]
