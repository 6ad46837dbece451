"""The served OpenAPI document, completed where FastAPI cannot know lngate's conventions.

FastAPI generates the paths, the bodies (from ``lngate.api.schemas``) and the parameters. This
module adds what it cannot see, read from the routes themselves so that it cannot drift:

- the error body ``{"error": {"code", "message"}}`` as one component per status, its ``code``
  an enum of the codes that status carries (``errors.codes_by_status``); every operation
  documents the statuses it can answer: its own (declared with ``error_responses``) and those
  any request may meet (a URL with NUL, a body too large, a shutdown, a bug);
- the request signature as a security scheme: three ``apiKey`` headers, all required together,
  on every route that depends on an ``Authenticator``;
- ``Idempotency-Key`` required where the route demands it (``required_idempotency``);
- links between operations (a created deposit can be read by its id).

It removes FastAPI's 422 ``HTTPValidationError``: lngate answers invalid input with a 400.
"""

from __future__ import annotations

import http
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from lngate.api import errors
from lngate.api.auth import Authenticator
from lngate.api.idempotency import (
    IDEMPOTENCY_HEADER,
    optional_idempotency,
    required_idempotency,
)
from lngate.security.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from lngate.services.idempotent import MAX_KEY_LENGTH

# Statuses any request can meet, before or beside its route: NUL in the URL or an invalid
# request (400), a body over the limit (413), a bug (500), a shutdown or an unreachable node (503).
COMMON_STATUSES = (400, 413, 500, 503)
SIGNED_STATUSES = (401,)

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "LngateKey": {
        "type": "apiKey",
        "in": "header",
        "name": KEY_HEADER,
        "description": "your API key",
    },
    "LngateTimestamp": {
        "type": "apiKey",
        "in": "header",
        "name": TIMESTAMP_HEADER,
        "description": "Unix time in milliseconds, within the server's receive window",
    },
    "LngateSignature": {
        "type": "apiKey",
        "in": "header",
        "name": SIGNATURE_HEADER,
        "description": "hex HMAC-SHA256 with your API secret over the timestamp, the method, "
        "the path with its query and the body bytes (see the README); each signature is "
        "accepted once",
    },
}
# One requirement object naming all three: a request needs every header (AND, not OR).
SIGNED: list[dict[str, list[str]]] = [{name: [] for name in SECURITY_SCHEMES}]

_REF = "#/components/schemas/"


def error_schema_name(status: int) -> str:
    return f"Error{status}"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error body of each status it answers besides the common
    ones (400, 413, 500, 503; and 401 when it is signed)."""
    return {status: _error_response(status) for status in statuses}


def _error_response(status: int) -> dict[str, Any]:
    codes = errors.codes_by_status()[status]
    return {
        "description": f"{http.HTTPStatus(status).phrase}: {', '.join(codes)}",
        "content": {"application/json": {"schema": {"$ref": _REF + error_schema_name(status)}}},
    }


def _error_components() -> dict[str, Any]:
    by_status = errors.codes_by_status()
    every_code = sorted({code for codes in by_status.values() for code in codes})
    components: dict[str, Any] = {
        "ErrorCode": {
            "title": "ErrorCode",
            "type": "string",
            "enum": every_code,
            "description": "every error code lngate answers with",
        }
    }
    for status, codes in by_status.items():
        components[error_schema_name(status)] = {
            "title": error_schema_name(status),
            "description": f"The error body of a {status} answer.",
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "code": {"type": "string", "enum": codes},
                        "message": {"type": "string", "description": "for people, not code"},
                    },
                }
            },
        }
    return components


# Links: operationId -> status -> link name -> link object (without its operationId's key).
LINKS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "post_deposit": {
        "201": {
            "GetDeposit": {
                "operationId": "get_deposit",
                "parameters": {"deposit_id": "$response.body#/id"},
            }
        }
    },
    "post_withdrawal": {
        "201": {
            "GetWithdrawal": {
                "operationId": "get_withdrawal",
                "parameters": {"withdrawal_id": "$response.body#/id"},
            }
        }
    },
    "list_review_queue": {
        "200": {
            "ApproveWithdrawal": {
                "operationId": "approve_withdrawal",
                "parameters": {"withdrawal_id": "$response.body#/0/id"},
            },
            "RejectWithdrawal": {
                "operationId": "reject_withdrawal",
                "parameters": {"withdrawal_id": "$response.body#/0/id"},
            },
        }
    },
    "get_user": {
        "200": {
            "FreezeUser": {
                "operationId": "freeze_user",
                "parameters": {"username": "$request.path.username"},
            },
            "UnfreezeUser": {
                "operationId": "unfreeze_user",
                "parameters": {"username": "$request.path.username"},
            },
        }
    },
    "freeze_user": {
        "200": {
            "GetFrozenUser": {
                "operationId": "get_user",
                "parameters": {"username": "$request.path.username"},
            }
        }
    },
}


def operation_id(route: APIRoute) -> str:
    """operationIds are the route functions' names: short, and stable for generated clients."""
    return route.name


def install(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, on the first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(app, generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(_error_components())
    signed_anywhere = False
    for route, operation in _operations(app, document):
        responses = operation.setdefault("responses", {})
        _drop_validation_error(responses)
        deps = list(_dependencies(route.dependant))
        signed = any(isinstance(d.call, Authenticator) for d in deps)
        for status in (*COMMON_STATUSES, *(SIGNED_STATUSES if signed else ())):
            responses.setdefault(str(status), _error_response(status))
        operation["responses"] = dict(sorted(responses.items()))
        if signed:
            signed_anywhere = True
            operation["security"] = SIGNED
        if any(d.call is required_idempotency for d in deps):
            _describe_idempotency_key(operation, required=True)
        elif any(d.call is optional_idempotency for d in deps):
            _describe_idempotency_key(operation, required=False)
        _tidy_parameters(operation)
        for status, links in LINKS.get(operation.get("operationId", ""), {}).items():
            responses[status]["links"] = links
    if signed_anywhere:
        components["securitySchemes"] = SECURITY_SCHEMES
    return document


def _operations(app: FastAPI, document: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """(route, operation) of each documented route, included routers' routes too."""
    paths = document.get("paths", {})
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and route.include_in_schema:
            for method in route.methods or ():
                operation = paths.get(route.path_format, {}).get(method.lower())
                if operation is not None:
                    yield route, operation


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _dependencies(dep)


def _drop_validation_error(responses: dict[str, Any]) -> None:
    """FastAPI's default 422, which lngate never sends (a 422 of our own stays)."""
    schema = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema")
    if schema == {"$ref": _REF + "HTTPValidationError"}:
        del responses["422"]


def _describe_idempotency_key(operation: dict[str, Any], *, required: bool) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "header" and parameter.get("name") == IDEMPOTENCY_HEADER:
            parameter["required"] = required
            parameter["schema"] = {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_KEY_LENGTH,
                "title": IDEMPOTENCY_HEADER,
            }
            parameter["description"] = (
                "a key of your choosing (printable, not blank): the same key with the same "
                "request gives the same result, once; with another request, a 409"
                + ("" if required else ". Optional here: without one, each request is new")
            )


# Pydantic leaves a bound on a type with a validator (``QueryInt``) under its Python name.
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _tidy_parameters(operation: dict[str, Any]) -> None:
    """A parameter is present or absent, never null: FastAPI's ``anyOf [T, null]`` for an
    optional one becomes ``T``; and its bounds are JSON Schema's."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        options = schema.get("anyOf")
        if isinstance(options, list):
            kept = [o for o in options if o != {"type": "null"}]
            if len(kept) == 1 and len(kept) < len(options):
                del schema["anyOf"]
                schema.update(kept[0])
        for python_name, json_name in _BOUNDS.items():
            if python_name in schema:
                schema[json_name] = schema.pop(python_name)
