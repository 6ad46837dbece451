"""One exception tree, one status per class, and the README's error table as the contract: every
code the API can answer is in it, with its status, and nothing else is."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections import Counter
from pathlib import Path

import lngate
from lngate.api import errors
from lngate.domain import errors as tree
from lngate.domain.errors import LngateError

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented() -> set[tuple[str, int]]:
    text = README.read_text()
    table = text[text.index("| code | status | when |") :].split("\n\n", 1)[0]
    pairs = set()
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        codes = re.findall(r"`([A-Z_]+)`", cells[0])
        pairs |= {(code, int(cells[1])) for code in codes}
    return pairs


def _every_error_class() -> set[type[LngateError]]:
    """Every subclass of LngateError anywhere in the package (all modules imported)."""
    for module in pkgutil.walk_packages(lngate.__path__, "lngate."):
        importlib.import_module(module.name)
    found: set[type[LngateError]] = set()
    pending = [LngateError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        found.add(cls)
    return found - {LngateError}


def test_every_error_class_lives_in_the_one_tree() -> None:
    outside = {f"{c.__module__}.{c.__name__}" for c in _every_error_class()}
    outside = {name for name in outside if not name.startswith(f"{tree.__name__}.")}
    assert outside == set()


def test_every_class_has_a_code_of_its_own() -> None:
    codes = Counter(cls.code for cls in _every_error_class())
    assert {code for code, n in codes.items() if n > 1} == set()


def test_every_class_is_mapped_to_a_status_explicitly() -> None:
    assert _every_error_class() - set(errors.STATUS) == set()


def test_every_error_class_is_in_the_readme_table_with_its_status() -> None:
    documented = _documented()
    missing = {(cls.code, status) for cls, status in errors.STATUS.items()} - documented
    assert missing == set()


def test_the_http_layer_codes_are_in_the_table() -> None:
    assert {(code, status) for status, code in errors.HTTP_LAYER_CODES} - _documented() == set()


def test_the_table_lists_nothing_the_api_cannot_answer() -> None:
    answerable = {(cls.code, status) for cls, status in errors.STATUS.items()}
    answerable |= {(code, status) for status, code in errors.HTTP_LAYER_CODES}
    assert _documented() - answerable == set()


def test_a_class_outside_the_table_is_a_500_not_a_quiet_400() -> None:
    class Stray(LngateError):
        code = "STRAY"

    assert errors.status_for(Stray("x")) == 500


async def test_a_broken_invariant_answers_a_generic_500_and_tells_the_client_nothing() -> None:
    import httpx
    from fastapi import FastAPI

    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise tree.InvariantBroken("lock row 'withdrawals' is missing")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/boom")

    assert answer.status_code == 500
    assert answer.json() == {
        "error": {"code": "INTERNAL", "message": "internal error (this is a bug; it was logged)"}
    }
