"""An aiohttp test client that validates every /api response against the served OpenAPI
document, so the document and the behaviour cannot drift apart."""

from __future__ import annotations

import io
import json
from typing import Any

from aiohttp.test_utils import TestClient
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from daemon.http.openapi import openapi_document
from daemon.service.wiring import Services

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    """A test client that validates each /api response against the served OpenAPI document."""

    def __init__(self, client: TestClient, ctx: Services):
        self.client = client
        self.ctx = ctx
        self.openapi = OpenAPI.from_dict(openapi_document(ctx.config.public_url))

    async def call(self, method: str, path: str, *, body: Any = None, auth: bool = True,
                   params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                   data: bytes | None = None, documented: bool = True) -> tuple[int, Any]:
        all_headers = {**(AUTH if auth else {}), **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        response = await self.client.request(
            method, path, params=params, headers=all_headers,
            data=io.BytesIO(data) if data is not None else None)
        raw = await response.read()
        if path.startswith("/api/") and documented:
            request = MockRequest(self.ctx.config.public_url, method.lower(), path,
                                  args=params, headers=all_headers, data=data)
            self.openapi.validate_response(
                request, MockResponse(raw, response.status, content_type=response.content_type))
        parsed = json.loads(raw) if response.content_type == "application/json" else raw
        return response.status, parsed
