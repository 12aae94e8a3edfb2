"""Discovery requests through the ASGI app, in process, with no server: the
workload to count instructions on (repeatable on a busy machine, unlike time).

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m maxine.bench.inprocess STRATEGY 40000
    # minus the same with 0 requests, divided by 40000 = instructions per request

STRATEGY is any built-in, or ``reference`` for the raw ASGI reference app. The
population is 10 services × 10 instances; a fake clock advances 25 µs per
request, and ``advanced-ml``'s background refresh runs every 1,000 requests
(every 50 ms at 20k requests/s), as the server's job does.
"""

from __future__ import annotations

import asyncio
import sys

from ..api.app import create_app
from ..api.operations import Maxine
from ..settings import Settings
from . import reference


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m maxine.bench.inprocess STRATEGY|reference REQUESTS", file=sys.stderr)
        return 2
    which, n = argv[0], int(argv[1])
    now = [1_800_000_000.0]

    def clock() -> float:
        now[0] += 25e-6
        return now[0]

    maxine = Maxine(Settings(), clock=clock)
    for s in range(10):
        for i in range(10):
            maxine.register({"serviceName": f"svc-{s}", "host": "127.0.0.1", "port": 9000 + i})
    app = reference.app if which == "reference" else create_app(Settings(), maxine)
    scopes = [{"type": "http", "method": "GET", "path": "/discover", "headers": [],
               "query_string": f"serviceName=svc-{s}&loadBalancing={which}&clientId=c{s}&lat=41&lon=-2".encode()}
              for s in range(10)]

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    async def run():
        learned = maxine.balancers.get("advanced-ml")
        for k in range(n):
            await app(scopes[k % 10], receive, send)
            if k % 1000 == 999 and getattr(learned, "_pending", None):
                learned.refresh_pending(now[0], 10_000)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
