"""lngate's own static files (``web/static``), served from memory under ``/assets/``.

The few small files are read once when the pages are installed. Their URLs carry a hash of
their content (``/assets/lngate.css?v=3f2a...``), so browsers may keep them for a year and
still see a new release at once. Only files that exist are served: no path is ever joined.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

PREFIX = "/assets"
MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
ASSET_HEADERS = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    version: str  # a short hash of the body


class Assets:
    """The static files of the package, by name."""

    def __init__(self, files: dict[str, Asset]) -> None:
        self._files = files

    @classmethod
    def load(cls) -> Assets:
        files = {}
        for entry in resources.files("lngate.web").joinpath("static").iterdir():
            suffix = "." + entry.name.rpartition(".")[2]
            if entry.is_file() and suffix in MEDIA_TYPES:
                body = entry.read_bytes()
                version = hashlib.sha256(body).hexdigest()[:12]
                files[entry.name] = Asset(body, MEDIA_TYPES[suffix], version)
        return cls(files)

    def url(self, name: str) -> str:
        """The versioned URL of a file; a name that is not one is a bug in a template."""
        return f"{PREFIX}/{name}?v={self._files[name].version}"

    def get(self, name: str) -> Asset | None:
        return self._files.get(name)

    def router(self) -> APIRouter:
        router = APIRouter(prefix=PREFIX, include_in_schema=False)

        @router.get("/{name}")
        async def get_asset(name: str) -> Response:
            asset = self.get(name)
            if asset is None:
                return Response(
                    "not found\n",
                    status_code=404,
                    media_type="text/plain; charset=utf-8",
                    headers={"X-Content-Type-Options": "nosniff"},
                )
            return Response(asset.body, media_type=asset.media_type, headers=ASSET_HEADERS)

        return router
