"""The raw layer in front of the FastAPI app, for ASGI and for granian's RSGI.

The hot routes (discover, and the JSON-body writes: register, heartbeat,
deregister, record-response-time(s), record-call) are answered here without routing, dependency injection or pydantic: a dict
lookup on (method, path), orjson, pre-built bodies. Everything else, and any
route when the fast path is disabled, goes to the FastAPI app, which serves
the same operations and documents them at ``/docs``. Both interfaces share
:meth:`FastPath.discover` and :meth:`FastPath.write`; they differ only in how
a body is read and an answer sent (:mod:`maxine.api.asgi`, :mod:`maxine.api.rsgi`).
"""

from __future__ import annotations

import logging
from time import perf_counter

from . import asgi, rsgi
from .asgi import INTERNAL, BadJson, BodyTooLarge, encode, response
from .operations import Maxine
from .routes import body_operations

log = logging.getLogger("maxine.api")


class FastPath:
    def __init__(self, maxine: Maxine, app, enabled: bool = True):
        self.maxine = maxine
        self.app = app
        self.limit = maxine.settings.max_body_bytes
        self.body_ops = body_operations(maxine) if enabled else {}
        self.discover_enabled = enabled
        self.state: dict = {}  # the lifespan state, handed to the app on RSGI (set by the server)

    def discover(self, query_string, scope, peer) -> tuple[int, bytes]:
        """``GET /discover``: ``(status, body bytes)``, synchronously (no coroutine per
        discovery). ``peer(scope)`` gives the caller's address and client id."""
        maxine = self.maxine
        maxine.requests += 1
        try:
            started = perf_counter()
            status, payload = maxine.discover(query_string, scope, peer)
            maxine.discover_latency.observe(perf_counter() - started)
        except Exception:  # a bug must cost one request, never the process
            log.exception("fast path failed on GET /discover")
            status, payload = 500, INTERNAL
        if status >= 400:
            maxine.errors += 1
        return status, encode(payload)

    async def write(self, method, path, scope, source, read_json):
        """``(status, body bytes)`` for a fast-path JSON-body route, None for the app.
        ``await read_json(scope, source, limit)`` reads the request body."""
        operation = self.body_ops.get((method, path))
        if operation is None:
            return None
        maxine = self.maxine
        maxine.requests += 1
        try:
            try:
                status, payload = operation(await read_json(scope, source, self.limit))
            except (BodyTooLarge, BadJson) as exc:
                status, payload = exc.answer
        except Exception:  # a bug must cost one request, never the process
            log.exception("fast path failed on %s %s", method, path)
            status, payload = 500, INTERNAL
        if status >= 400:
            maxine.errors += 1
        return status, encode(payload)

    async def __call__(self, scope, receive, send):
        """ASGI."""
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if path == "/discover" and method == "GET" and self.discover_enabled:
                answer = self.discover(scope["query_string"], scope, asgi.peer)
            else:
                answer = await self.write(method, path, scope, receive, asgi.read_json)
            if answer is None:
                await self.app(scope, receive, self._counting(send))
            else:
                start, body = response(*answer)
                await send(start)
                await send(body)
        else:
            await self.app(scope, receive, send)

    async def __rsgi__(self, scope, proto):
        """RSGI (granian). Its query string is a ``str``: discovery takes it as it is."""
        if scope.proto == "http":
            method, path = scope.method, scope.path
            if path == "/discover" and method == "GET" and self.discover_enabled:
                answer = self.discover(scope.query_string, scope, rsgi.peer)
            else:
                answer = await self.write(method, path, scope, proto, rsgi.read_json)
            if answer is None:
                await rsgi.call_http(self.app, scope, proto, self.state, self._counting)
            else:
                proto.response_bytes(answer[0], rsgi.JSON_HEADERS, answer[1])
        else:
            await rsgi.call_websocket(self.app, scope, proto, self.state)

    def _counting(self, send):
        async def counting_send(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self.maxine.errors += 1
            await send(message)
        return counting_send
