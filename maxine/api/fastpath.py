"""The raw layer in front of the FastAPI app, for ASGI and for granian's RSGI.

The hot routes (discover, and the JSON-body writes: register, heartbeat,
deregister, record-response-time(s), record-call) are answered here without routing, dependency injection or pydantic: a dict
lookup on (method, path), orjson, pre-built bodies. Everything else, and any
route when the fast path is disabled, goes to the FastAPI app, which serves
the same operations and documents them at ``/docs``. Both interfaces share
:meth:`FastPath.answer`; they differ only in how a body is read and an
answer sent (:mod:`maxine.api.asgi`, :mod:`maxine.api.rsgi`).
"""

from __future__ import annotations

import logging
from time import perf_counter

from . import asgi, rsgi
from .asgi import INTERNAL_BODY, BadJson, BodyTooLarge, ClosesUnread, encode, response
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
        self.http_app = ClosesUnread(self._counting_app)  # the app, as HTTP requests reach it from here

    def discover(self, query_string: bytes, scope, io):
        """``(status, body bytes, close)`` for ``GET /discover``; ``close`` when the
        request announced a body, which the answer leaves unread. A plain call: discovery
        never awaits, and a coroutine per request cost ~2k instructions, a tenth of a
        round-robin discovery (docs/performance-history.md, "Fourteenth session")."""
        maxine = self.maxine
        maxine.requests += 1
        latency = maxine.discover_latency
        try:
            if latency.untimed:
                latency.untimed -= 1
                status, payload = maxine.discover(query_string, scope, io.peer)
            else:
                latency.untimed = latency.SAMPLE - 1
                started = perf_counter()
                status, payload = maxine.discover(query_string, scope, io.peer)
                latency.observe(perf_counter() - started)
            close = io.declares_body(scope)
        except Exception:  # a bug must cost one request, never the process
            return self._failed("GET", "/discover")
        if status >= 400:
            maxine.errors += 1
        return status, encode(payload), close

    async def answer(self, method, path, scope, source, io):
        """``(status, body bytes, close)`` for a fast-path write, None for the app;
        ``close`` when the answer leaves the request body unread. ``io`` is the
        interface's module (:mod:`~maxine.api.asgi` or :mod:`~maxine.api.rsgi`):
        ``await io.read_json(scope, source, limit)`` reads the request body."""
        maxine = self.maxine
        maxine.requests += 1  # every HTTP request, the app's too
        operation = self.body_ops.get((method, path))
        if operation is None:
            return None
        close = False
        try:
            try:
                status, payload = operation(await io.read_json(scope, source, self.limit))
            except BodyTooLarge as exc:
                status, payload = exc.answer
                close = True
            except BadJson as exc:
                status, payload = exc.answer
        except Exception:  # a bug must cost one request, never the process
            return self._failed(method, path)
        if status >= 400:
            maxine.errors += 1
        return status, encode(payload), close

    def _failed(self, method, path):
        log.exception("fast path failed on %s %s", method, path)
        self.maxine.errors += 1
        return 500, INTERNAL_BODY, False

    async def __call__(self, scope, receive, send):
        """ASGI."""
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if path == "/discover" and method == "GET" and self.discover_enabled:
                answer = self.discover(scope["query_string"], scope, asgi)
            else:
                answer = await self.answer(method, path, scope, receive, asgi)
            if answer is None:
                await self.http_app(scope, receive, send)
            else:
                start, body = response(*answer)
                await send(start)
                await send(body)
        else:
            await self.app(scope, receive, send)

    async def __rsgi__(self, scope, proto):
        """RSGI (granian)."""
        if scope.proto == "http":
            method, path = scope.method, scope.path
            if path == "/discover" and method == "GET" and self.discover_enabled:
                answer = self.discover(scope.query_string.encode(), scope, rsgi)
            else:
                answer = await self.answer(method, path, scope, proto, rsgi)
            if answer is None:
                await rsgi.call_http(self.http_app, scope, proto, self.state)
            else:
                proto.response_bytes(answer[0], rsgi.json_headers(answer[2]), answer[1])
        else:
            await rsgi.call_websocket(self.app, scope, proto, self.state)

    async def _counting_app(self, scope, receive, send):
        """The app, with its error answers counted."""
        async def counting_send(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self.maxine.errors += 1
            await send(message)
        await self.app(scope, receive, counting_send)
