"""The ``Idempotency-Key`` header, with the hash of the request it was first used for.

Both dependencies read the header as optional, so that a missing key is refused by the use
case's own check (400 INVALID_REQUEST, one message); the OpenAPI document marks it required
where ``required_idempotency`` is the dependency (``lngate.api.openapi``).
"""

from typing import Annotated

from fastapi import Header, Request

from lngate.services.idempotent import request_hash, validate_key

IDEMPOTENCY_HEADER = "Idempotency-Key"
KeyHeader = Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)]


async def required_idempotency(request: Request, key: KeyHeader = None) -> tuple[str, str]:
    """(key, request hash) for a POST that moves money: the key is mandatory."""
    return validate_key(key), request_hash(request.method, request.url.path, await request.body())


async def optional_idempotency(request: Request, key: KeyHeader = None) -> tuple[str, str] | None:
    if key is None:
        return None
    return await required_idempotency(request, key)
