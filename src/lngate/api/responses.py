"""A JSON response rendered by orjson (bytes straight out, no float surprises for ints)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# Cursors are database sequence numbers (int64); anything larger is refused at the edge.
MAX_SEQ = 2**62
