"""Dependencies point inwards: the domain imports nothing but itself and the standard library."""

import ast
import sys
from pathlib import Path

import lngate.domain

DOMAIN = Path(lngate.domain.__file__).parent


def test_domain_imports_only_the_standard_library_and_itself() -> None:
    offenders = []
    for path in DOMAIN.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if name.startswith("lngate.domain") or name == "__future__":
                    continue
                if top not in sys.stdlib_module_names:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
