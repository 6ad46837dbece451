"""The README's error table is the contract: every code the API can answer is in it, with its
status, and nothing else is."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import lngate
from lngate.api import errors
from lngate.domain.errors import LngateError

README = Path(__file__).resolve().parents[2] / "README.md"
# Codes the HTTP layer itself answers (framework refusals, validation, edge limits, bugs).
HTTP_LAYER_CODES = {
    ("NOT_FOUND", 404),
    ("METHOD_NOT_ALLOWED", 405),
    ("PAYLOAD_TOO_LARGE", 413),
    ("INVALID_REQUEST", 400),
    ("MALFORMED_JSON", 400),
    ("INVALID_AMOUNT", 400),
    ("INTERNAL", 500),
    ("SHUTTING_DOWN", 503),
}


def _documented() -> set[tuple[str, int]]:
    text = README.read_text()
    table = text[text.index("| code | status | when |") :].split("\n\n", 1)[0]
    pairs = set()
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        codes = re.findall(r"`([A-Z_]+)`", cells[0])
        statuses = {int(s) for s in re.findall(r"\b([1-5]\d\d)\b", cells[1] + " " + cells[2])}
        pairs |= {(code, status) for code in codes for status in statuses}
    return pairs


def _error_classes() -> Iterator[type[LngateError]]:
    for module in pkgutil.walk_packages(lngate.__path__, "lngate."):
        importlib.import_module(module.name)
    pending = [LngateError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not LngateError:
            yield cls


def test_every_error_class_is_in_the_table_with_its_status() -> None:
    documented = _documented()
    missing = {
        (cls.__name__, cls.code, errors.status_for(cls("x")))
        for cls in _error_classes()
        if (cls.code, errors.status_for(cls("x"))) not in documented
    }
    assert missing == set()


def test_the_http_layer_codes_are_in_the_table() -> None:
    assert HTTP_LAYER_CODES - _documented() == set()


def test_the_table_lists_nothing_the_api_cannot_answer() -> None:
    answerable = {cls.code for cls in _error_classes()} | {c for c, _ in HTTP_LAYER_CODES}
    assert {code for code, _ in _documented()} - answerable == set()
