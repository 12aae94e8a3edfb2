"""The raw ASGI layer in front of the FastAPI app.

The hot routes (discover, and the JSON-body writes: register, heartbeat,
deregister, record-response-time, record-call) are answered here without routing, dependency injection or pydantic: a dict
lookup on (method, path), orjson, pre-built bodies. Everything else, and any
route when the fast path is disabled, goes to the FastAPI app, which serves
the same operations and documents them at ``/docs``.
"""

from __future__ import annotations

import logging
from time import perf_counter

from .asgi import BadJson, BodyTooLarge, read_json, response
from .operations import Maxine
from .routes import body_operations

log = logging.getLogger("maxine.api")

INVALID_JSON = {"error": "Invalid JSON"}
TOO_LARGE = {"error": "Request body too large"}
INTERNAL = {"error": "Internal error (logged by the server); retry the request"}


class FastPath:
    def __init__(self, maxine: Maxine, app, enabled: bool = True):
        self.maxine = maxine
        self.app = app
        self.limit = maxine.settings.max_body_bytes
        self.body_ops = body_operations(maxine) if enabled else {}
        self.discover_enabled = enabled

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        maxine = self.maxine
        maxine.requests += 1
        path = scope["path"]
        method = scope["method"]
        try:
            if method == "GET" and path == "/discover" and self.discover_enabled:
                started = perf_counter()
                status, payload = maxine.discover(scope["query_string"], scope)
                maxine.discover_latency.observe(perf_counter() - started)
            elif (operation := self.body_ops.get((method, path))) is not None:
                try:
                    body = await read_json(scope, receive, self.limit)
                except BodyTooLarge:
                    status, payload = 413, TOO_LARGE
                except BadJson:
                    status, payload = 400, INVALID_JSON
                else:
                    status, payload = operation(body)
            else:
                await self.app(scope, receive, self._counting(send))
                return
        except Exception:  # a bug must cost one request, never the process
            log.exception("fast path failed on %s %s", method, path)
            status, payload = 500, INTERNAL
        if status >= 400:
            maxine.errors += 1
        start, body = response(status, payload)
        await send(start)
        await send(body)

    def _counting(self, send):
        async def counting_send(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self.maxine.errors += 1
            await send(message)
        return counting_send
