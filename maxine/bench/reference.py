"""The throughput reference: a raw app returning a fixed ~150-byte JSON body
(after reading the request body, for a POST), served by exactly the same
server code and settings as ``maxine serve``. It speaks ASGI and, on granian,
RSGI, like ``maxine serve``; ``--interface asgi`` gives issue #6's raw ASGI
reference.

    python -m maxine.bench.reference --port 9000 [--server granian|uvicorn]
"""

from __future__ import annotations

import argparse

from ..server import run
from ..settings import Settings

BODY = (b'{"nodeId":"svc-0:127.0.0.1:9000","serviceName":"svc-0","address":"127.0.0.1:9000",'
        b'"host":"127.0.0.1","port":9000,"metadata":{},"healthy":true,"strategy":"round-robin"}')
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]}
RESPONSE = {"type": "http.response.body", "body": BODY}


HEADERS = [("content-type", "application/json")]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":  # read the body, as any write endpoint must
        message = await receive()
        while message.get("more_body"):
            message = await receive()
    await send(START)
    await send(RESPONSE)


class Reference:
    """The reference app, callable as ASGI (``asgi_app``) and as RSGI."""

    __call__ = staticmethod(asgi_app)

    async def __rsgi__(self, scope, proto):
        if scope.method == "POST":  # read the body, as any write endpoint must
            await proto()
        proto.response_bytes(200, HEADERS, BODY)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maxine.bench.reference")
    Settings.add_arguments(parser)
    run(Reference(), Settings.from_args(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
