"""The served OpenAPI documents (public and admin) are a contract a client generator or an API
fuzzer can use: valid OpenAPI 3.1, every 2xx body a real schema, every error status with the
error body (its codes an enum), the signature as a security scheme, Idempotency-Key required
where the route demands it; and 405s carry Allow. tests/integration/test_schemathesis.py
checks that the answers match these documents."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import orjson
import pytest
import schemathesis
from fastapi import FastAPI
from pydantic import BaseModel

from lngate.api import errors, schemas
from lngate.api.admin_app import create_admin_app
from lngate.api.app import create_app
from lngate.bootstrap import use_cases
from lngate.config import Config
from lngate.domain.ledger import HoldState, TransferFlag
from lngate.lightning.simnet import SimnetNetwork, SimnetNode
from lngate.services import channels
from lngate.store.deposits import DepositStatus
from lngate.store.users import Role, UserStatus
from tests.conftest import started_core

SIGNATURE_SCHEMES = {"LngateKey", "LngateTimestamp", "LngateSignature"}
COMMON_STATUSES = {"400", "413", "500", "503"}
UNSIGNED_PATHS = ("/health", "/.well-known/lnurlp/", "/lnurlp/")


@dataclasses.dataclass
class Apps:
    public: FastAPI
    admin: FastAPI


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    """The document depends on no database: one SQLite core serves both apps here."""
    tmp = tmp_path_factory.mktemp("openapi")
    config = Config(
        data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'db.sqlite3'}", log_json=False
    )
    with started_core(config) as core, SimnetNetwork(config.simnet_dir) as network:
        node = SimnetNode(network)
        yield Apps(create_app(core, cases := use_cases(core, node)), create_admin_app(core, cases))


def served(app: FastAPI) -> dict[str, Any]:
    return typing.cast(dict[str, Any], _get(app, "/openapi.json").json())


def _get(app: FastAPI, path: str, method: str = "GET") -> httpx.Response:
    import asyncio

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lngate") as client:
            return await client.request(method, path)

    return asyncio.run(go())


@pytest.fixture(scope="module", params=["public", "admin"])
def document(request: pytest.FixtureRequest, apps: Apps) -> dict[str, Any]:
    return served(getattr(apps, request.param))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(document).validate()  # the OpenAPI 3.1 meta-schema
    # ... which leaves the Schema Objects alone: each must be valid JSON Schema 2020-12.
    schema_objects = list(document["components"]["schemas"].values())
    for _, _, operation in operations(document):
        for parameter in operation.get("parameters", []):
            schema_objects.append(parameter["schema"])
        for response in operation["responses"].values():
            for media in response.get("content", {}).values():
                schema_objects.append(media["schema"])
    for schema in schema_objects:
        jsonschema_rs.meta.validate(
            {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        )
    # no Python spellings of JSON Schema keywords (pydantic leaves some on annotated types)
    for node in _walk(schema_objects):
        assert not {"ge", "le", "gt", "lt"} & set(node if "type" in node else ()), node


def test_every_2xx_body_has_a_real_schema(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        success = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        # One success, or two where creating answers 201 and finding it made before 200.
        assert len(success) == 1 or set(success) == {"200", "201"}, (method, path)
        for status, response in success.items():
            if status == "204":
                assert "content" not in response, (method, path)
                continue
            assert response.get("content"), (method, path, status)
            for media_type, media in response["content"].items():
                schema = media["schema"]
                assert schema != {"type": "string"}, (method, path, media_type)
            if media_type == "application/json":
                assert "$ref" in schema or schema.get("type") == "array" or "anyOf" in schema
            else:
                assert (method, path, media_type) == ("GET", "/v1/events", "text/event-stream")
                assert schema["type"] == "object"


def test_every_operation_documents_the_error_body(document: dict[str, Any]) -> None:
    by_status = errors.codes_by_status()
    components = document["components"]["schemas"]
    for method, path, operation in operations(document):
        responses = operation["responses"]
        assert set(responses) >= COMMON_STATUSES, (method, path)
        for status, response in responses.items():
            if status.startswith("2"):
                continue
            schema = response["content"]["application/json"]["schema"]
            if path.startswith(("/.well-known/lnurlp/", "/lnurlp/")) and status in (
                "400",
                "404",
                "413",
                "429",
            ):
                assert schema == {"$ref": "#/components/schemas/LudError"}  # LUD-06
                continue
            assert schema == {"$ref": f"#/components/schemas/Error{status}"}, (method, path)
            error = components[f"Error{status}"]["properties"]["error"]
            assert error["required"] == ["code", "message"]
            assert error["properties"]["code"]["enum"] == by_status[int(status)]
    every_code = sorted({c for codes in by_status.values() for c in codes})
    assert components["ErrorCode"]["enum"] == every_code


def test_no_fastapi_validation_error_is_documented(document: dict[str, Any]) -> None:
    text = orjson.dumps(document).decode()
    assert "HTTPValidationError" not in text
    assert "ValidationError" not in document["components"]["schemas"]
    for _, _, operation in operations(document):
        if "422" in operation["responses"]:
            schema = operation["responses"]["422"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error422"}


def test_the_signature_is_a_security_scheme_on_every_signed_route(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == SIGNATURE_SCHEMES
    assert {(s["type"], s["in"]) for s in schemes.values()} == {("apiKey", "header")}
    assert {s["name"] for s in schemes.values()} == {
        "X-Lngate-Key",
        "X-Lngate-Timestamp",
        "X-Lngate-Signature",
    }
    for method, path, operation in operations(document):
        if path.startswith(UNSIGNED_PATHS):
            assert "security" not in operation, (method, path)
            assert "401" not in operation["responses"]
        else:
            assert path.startswith(("/v1/", "/admin/v1/")), path
            # one requirement naming all three: every header is needed (AND)
            assert operation["security"] == [{name: [] for name in SIGNATURE_SCHEMES}], path
            assert "401" in operation["responses"]


def test_idempotency_key_is_required_where_the_route_requires_it(apps: Apps) -> None:
    document = served(apps.public)
    found = {}
    for method, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "Idempotency-Key":
                assert parameter["in"] == "header"
                assert parameter["schema"]["type"] == "string"
                found[method, path] = parameter["required"]
    assert found == {
        ("POST", "/v1/transfers"): True,
        ("POST", "/v1/withdrawals"): True,
        ("POST", "/v1/deposits"): False,
        ("POST", "/v1/orders/{order_id}/pay"): True,
        ("POST", "/v1/orders/{order_id}/refunds"): True,
    }


def test_operation_ids_are_the_route_names_and_links_resolve(document: dict[str, Any]) -> None:
    ids = {op["operationId"]: (path, op) for _, path, op in operations(document)}
    assert len(ids) == len(list(operations(document)))
    for _, _, operation in operations(document):
        for response in operation["responses"].values():
            for link in response.get("links", {}).values():
                path, target = ids[link["operationId"]]
                names = {p["name"] for p in target.get("parameters", [])}
                assert set(link["parameters"]) <= names, (link, path)


@pytest.mark.parametrize(
    ("app_name", "method", "path", "allow"),
    [
        ("public", "DELETE", "/v1/account", "GET"),
        ("public", "PUT", "/health", "GET"),
        ("public", "GET", "/v1/transfers", "POST"),
        ("admin", "DELETE", "/admin/v1/status", "GET"),
        ("admin", "GET", "/admin/v1/halt", "POST"),
        # a path served by two routes allows the methods of both
        ("public", "PUT", "/v1/deposits", "GET, POST"),
        ("public", "DELETE", "/v1/withdrawals", "GET, POST"),
        ("admin", "DELETE", "/admin/v1/channels", "GET, POST"),
        ("admin", "PATCH", "/admin/v1/reconciliation", "GET, POST"),
    ],
)
def test_405_answers_carry_allow(
    apps: Apps, app_name: str, method: str, path: str, allow: str
) -> None:
    r = _get(getattr(apps, app_name), path, method)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_response_literals_match_the_enums() -> None:
    def literal(alias: Any) -> set[str]:
        return set(typing.get_args(alias))

    assert literal(schemas.UserStatus) == {s.value for s in UserStatus}
    assert literal(schemas.UserRole) == {r.value for r in Role}
    assert literal(schemas.DepositStatus) == {s.value for s in DepositStatus}
    assert literal(schemas.HoldState) == {s.value for s in HoldState}
    assert literal(schemas.TransferPhase) == {f.value for f in TransferFlag}


def test_response_models_read_records_and_dicts_alike() -> None:
    opened = channels.ChannelOpened("txid:0", "02" + "a" * 64, 100_000, 0, "bcrt1qcold")
    from_record = schemas.ChannelOpened.model_validate(opened)
    assert from_record == schemas.ChannelOpened.model_validate(opened.as_json())
    assert from_record.model_dump() == opened.as_json()

    @dataclasses.dataclass(frozen=True)
    class TransferRecord:  # what the use case will return: "from" is no attribute name
        id: str
        from_: str
        to: str
        amount_msat: int
        memo: str
        status: str
        created_at: str

    receipt = {
        "id": "xfer:1",
        "from": "alice",
        "to": "bob",
        "amount_msat": 1,
        "memo": "",
        "status": "completed",
        "created_at": "2024-01-01T00:00:00.000+00:00",
    }
    record = TransferRecord(**{("from_" if k == "from" else k): v for k, v in receipt.items()})
    for source in (receipt, record):
        model = schemas.Transfer.model_validate(source)
        assert model.model_dump(mode="json", by_alias=True) == receipt


def test_response_models_refuse_keys_they_do_not_declare() -> None:
    """A key a use case adds must be declared here first: never dropped from the wire unseen."""
    for model in _response_models():
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("from_attributes") is True, model


def _response_models() -> list[type[BaseModel]]:
    found = []
    for value in vars(schemas).values():
        is_model = isinstance(value, type) and issubclass(value, schemas._Response)
        if is_model and value is not schemas._Response:
            found.append(value)
    assert len(found) > 30
    return found
