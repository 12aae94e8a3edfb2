"""Granian's native interface (RSGI) for the app.

On granian, RSGI costs less per request than ASGI: no message dicts, the
whole body in one await, one call to answer (docs/performance-history.md, "Sixth session").
:class:`~maxine.api.fastpath.FastPath` answers its routes through it
directly; every other request reaches the ASGI app (FastAPI) through the
bridge here, which translates one request or WebSocket, messages both ways.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote

from .asgi import INTERNAL_BODY, BodyTooLarge, check_length, loads

log = logging.getLogger("maxine.api")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
JSON_HEADERS = [("content-type", "application/json")]
CLOSING_JSON_HEADERS = JSON_HEADERS + [("connection", "close")]


def json_headers(close: bool) -> list[tuple[str, str]]:
    """A JSON answer's headers; ``close`` when it goes out before the request body
    was read (:data:`maxine.api.asgi.CLOSE`)."""
    return CLOSING_JSON_HEADERS if close else JSON_HEADERS


def declares_body(scope) -> bool:
    """Whether an RSGI request announces a body."""
    headers = scope.headers
    length = headers.get("content-length")
    return "transfer-encoding" in headers if length is None else length.strip() != "0"


def _address(text: str) -> tuple[str, int] | None:
    """``"host:port"`` (``"[::1]:port"`` for IPv6) as ASGI's (host, port)."""
    if not text:
        return None
    host, _, port = text.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def peer(scope) -> tuple[str | None, str | None]:
    """The caller's address and ``X-Client-Id`` header, from an RSGI scope."""
    address = _address(scope.client)
    return (address[0] if address else None), scope.headers.get("x-client-id")


async def read_json(scope, proto, limit: int):
    """The request body decoded as JSON, with :func:`maxine.api.asgi.read_json`'s
    errors: BodyTooLarge past ``limit`` bytes, BadJson when it is not JSON."""
    length = scope.headers.get("content-length")
    if length is not None:
        check_length(length, limit)
        return loads(await proto())
    chunks, size = [], 0
    async for chunk in proto:  # chunked: count as it arrives
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return loads(b"".join(chunks))


def asgi_scope(scope, kind: str, state: dict) -> dict:
    raw_path = scope.path
    return {
        "type": kind, "asgi": ASGI_VERSION, "http_version": scope.http_version, "scheme": scope.scheme,
        "method": scope.method, "path": unquote(raw_path), "raw_path": raw_path.encode("latin-1", "replace"),
        "root_path": "", "query_string": scope.query_string.encode("latin-1", "replace"),
        "headers": [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in scope.headers.items()],
        "client": _address(scope.client), "server": _address(scope.server), "state": state.copy(),
    }


def _headers(start: dict) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]


async def call_http(app, scope, proto, state: dict) -> None:
    """Serve one HTTP request with the ASGI ``app``."""
    chunks = proto.__aiter__()
    more_body = True
    start = stream = None
    answered = False  # a whole response went out, or a stream started

    async def receive():
        nonlocal more_body
        if more_body:
            try:
                return {"type": "http.request", "body": await chunks.__anext__(), "more_body": True}
            except StopAsyncIteration:
                more_body = False
                return {"type": "http.request", "body": b"", "more_body": False}
        await proto.client_disconnect()
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal start, stream, answered
        kind = message["type"]
        if kind == "http.response.start":
            start = message
        elif kind == "http.response.body":
            body = message.get("body", b"")
            if stream is None:
                if start is None or answered:
                    raise RuntimeError("http.response.body without a response start")
                answered = True
                if not message.get("more_body", False):
                    proto.response_bytes(start["status"], _headers(start), body)
                    return
                stream = proto.response_stream(start["status"], _headers(start))
            if body:
                try:
                    await stream.send_bytes(body)
                except RuntimeError as exc:  # the client went away (Starlette expects an OSError)
                    raise OSError(str(exc)) from exc

    try:
        await app(asgi_scope(scope, "http", state), receive, send)
    except Exception:
        if not answered:
            log.exception("unhandled error on %s %s", scope.method, scope.path)
            proto.response_bytes(500, json_headers(more_body and declares_body(scope)), INTERNAL_BODY)
        # else the app answered (a 500 from its error handler, which logged it) or the stream broke
        return
    if not answered:
        if start is None:
            log.error("no response from the app on %s %s", scope.method, scope.path)
            proto.response_bytes(500, json_headers(more_body and declares_body(scope)), INTERNAL_BODY)
        else:  # a start with no body message: an empty body
            proto.response_bytes(start["status"], _headers(start), b"")


async def call_websocket(app, scope, proto, state: dict) -> None:
    """Serve one WebSocket with the ASGI ``app``."""
    transport = None
    connected = closed = False
    asgi = asgi_scope(scope, "websocket", state)
    asgi["subprotocols"] = [p.strip() for p in (scope.headers.get("sec-websocket-protocol") or "").split(",")
                            if p.strip()]

    async def receive():
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        if transport is None or closed:
            return {"type": "websocket.disconnect", "code": 1000}
        try:
            message = await transport.receive()
        except RuntimeError:  # the connection dropped without a close frame
            return {"type": "websocket.disconnect", "code": 1006}
        if message.kind == 0:
            return {"type": "websocket.disconnect", "code": 1005}
        if message.kind == 1:
            return {"type": "websocket.receive", "bytes": message.data}
        return {"type": "websocket.receive", "text": message.data}

    async def send(message):
        nonlocal transport, closed
        kind = message["type"]
        if kind == "websocket.accept":
            transport = await proto.accept()
        elif kind == "websocket.send":
            if transport is None or closed:
                raise OSError("websocket is not open")
            try:
                text = message.get("text")
                if text is not None:
                    await transport.send_str(text)
                else:
                    await transport.send_bytes(message.get("bytes") or b"")
            except RuntimeError as exc:  # the client went away
                raise OSError(str(exc)) from exc
        elif kind == "websocket.close" and not closed:
            closed = True
            proto.close(message.get("code", 1000) if transport is not None else 403)

    try:
        await app(asgi, receive, send)
    except Exception:
        log.exception("unhandled error on websocket %s", scope.path)
    if not closed:
        proto.close(1000 if transport is not None else 403)
