"""A JSON response rendered by orjson (bytes straight out, no float surprises for ints).

A ``JSONResponse`` to FastAPI, so that a route's ``response_model`` is documented in the OpenAPI
document (for any other response class FastAPI documents a bare string).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# Cursors are database sequence numbers (int64); anything larger is refused at the edge.
MAX_SEQ = 2**62
