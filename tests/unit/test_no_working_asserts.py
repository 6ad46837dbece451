"""An ``assert`` states what must be true if the code is right; it never does work.

``python -O`` removes every assert, and whatever its expression did goes with it: ``assert
store.finish(...)`` would lose the write, ``assert (row := fetch())`` the row. So, anywhere in
``src/lngate``, an assert's test and message may call only pure built-ins, and may not bind a
name, await, or yield. An invariant that guards money is an explicit check that raises
``InvariantBroken``, which survives ``-O``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import lngate

SRC = Path(lngate.__file__).parent
ROOT = SRC.parents[1]

# Built-ins that only look at their arguments: calling them changes nothing.
PURE_BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "bool",
        "callable",
        "frozenset",
        "hasattr",
        "int",
        "isinstance",
        "issubclass",
        "len",
        "max",
        "min",
        "repr",
        "set",
        "sorted",
        "str",
        "sum",
        "tuple",
        "type",
    }
)

# Expressions that do something whatever they call.
DOING = (ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)


def _does_work(node: ast.AST) -> bool:
    if isinstance(node, DOING):
        return True
    if isinstance(node, ast.Call):
        return not (isinstance(node.func, ast.Name) and node.func.id in PURE_BUILTINS)
    return False


def _works(statement: ast.Assert) -> bool:
    parts = [statement.test] if statement.msg is None else [statement.test, statement.msg]
    return any(_does_work(node) for part in parts for node in ast.walk(part))


def _offending_asserts(path: Path) -> Iterator[int]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Assert) and _works(node):
            yield node.lineno


def test_no_assert_in_src_does_any_work() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        for line in _offending_asserts(path)
    ]
    assert offenders == [], "asserts that do work (gone under -O):\n" + "\n".join(offenders)


def test_the_check_sees_what_it_must() -> None:
    """The rule itself, on examples: pure built-ins pass; calls, walruses and awaits do not."""

    def offends(source: str) -> bool:
        (statement,) = ast.parse(source).body
        assert isinstance(statement, ast.Assert)
        return _works(statement)

    assert not offends("assert x is not None")
    assert not offends("assert 0 < len(h) == 32 and isinstance(h, bytes), f'{h!r}'")
    assert not offends("assert all(n >= 0 for n in sorted(values))")
    assert offends("assert store.finish(row)")
    assert offends("assert hashlib.sha256(p).digest() == h")
    assert offends("assert ok, describe(row)")
    assert offends("assert (row := fetch_row())")
    assert offends("assert await node.ping()")
    assert offends("assert x, (yield)")
