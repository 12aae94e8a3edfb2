"""Raw ASGI helpers: read a bounded JSON body, send a JSON response."""

from __future__ import annotations

import orjson
from starlette.responses import Response

JSON_HEADERS = [(b"content-type", b"application/json")]
INTERNAL = {"error": "Internal error (logged by the server); retry the request"}


class BodyTooLarge(Exception):
    answer = (413, {"error": "Request body too large"})


class BadJson(Exception):
    answer = (400, {"error": "Invalid JSON"})


def check_length(value, limit: int) -> None:
    """BodyTooLarge when a Content-Length header value says the body is past ``limit``."""
    try:
        if int(value) > limit:
            raise BodyTooLarge
    except ValueError:
        pass


def declares_body(scope) -> bool:
    """Whether an ASGI request announces a body."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() != b"0"
        if name == b"transfer-encoding":
            return True
    return False


def loads(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadJson from None


async def read_json(scope, receive, limit: int):
    """The request body decoded as JSON; BodyTooLarge past ``limit`` bytes (413),
    BadJson when it is not JSON (400). Reads and decodes in one coroutine: one
    frame less per request than a body reader awaited by a decoder."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            check_length(value, limit)
            break
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))  # usually the whole body came in one message


def encode(payload) -> bytes:
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)


INTERNAL_BODY = encode(INTERNAL)


# An answer sent before the request body was read says "Connection: close". granian
# otherwise keeps or drops such a connection as the timing falls (it may not have the
# whole body yet), and a client that sends its next request down it loses that request.
CLOSE = (b"connection", b"close")

_starts: dict[tuple[int, int, bool], dict] = {}


def _start(status: int, length: int, close: bool) -> dict:
    """The response-start message for a JSON body; servers only read it, so
    one message per (status, length, close) is built once and reused."""
    key = (status, length, close)
    message = _starts.get(key)
    if message is None:
        headers = JSON_HEADERS + [(b"content-length", str(length).encode())]
        if close:
            headers.append(CLOSE)
        message = {"type": "http.response.start", "status": status, "headers": headers}
        if len(_starts) < 4096:
            _starts[key] = message
    return message


def json_response(status: int, payload, headers: dict | None = None) -> Response:
    """A JSON response for the FastAPI routes (the fast path sends :func:`response`'s messages)."""
    return Response(encode(payload), status_code=status, media_type="application/json", headers=headers)


def response(status: int, body: bytes, close: bool) -> tuple[dict, dict]:
    """The two ASGI messages of a JSON response (the caller awaits ``send`` on each:
    one coroutine frame less per request than a helper that sends them)."""
    return _start(status, len(body), close), {"type": "http.response.body", "body": body}


class ClosesUnread:
    """ASGI middleware: an HTTP answer that starts before the request body was
    read in full says "Connection: close" (see :data:`CLOSE`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not declares_body(scope):
            return await self.app(scope, receive, send)
        unread = True

        async def watched_receive():
            nonlocal unread
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                unread = False
            return message

        async def closing_send(message):
            if unread and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
            await send(message)

        await self.app(scope, watched_receive, closing_send)


def client_ip(scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def peer(scope) -> tuple[str | None, str | None]:
    """The caller's address and ``X-Client-Id`` header, from an ASGI scope."""
    return client_ip(scope), header(scope, b"x-client-id")
