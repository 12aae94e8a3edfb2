"""Requests through the ASGI app, in process, with no server: the workload to
count instructions on (repeatable on a busy machine, unlike time).

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m maxine.bench.inprocess WORKLOAD 100000 [asgi|rsgi]
    # minus the same with 50000 requests, divided by 50000 = instructions per request
    # (a start-up alone varies by ~20M instructions run to run: subtract a run that
    # starts the same way, not one with 0 requests)

``rsgi`` drives the app through granian's interface, as ``maxine serve`` runs it,
with stand-ins for granian's scope and protocol objects; ``asgi`` (the default)
through ASGI.

WORKLOAD is a built-in strategy (``GET /discover`` with it), ``reference`` (the
raw ASGI reference app, GET), ``reference-post`` (the reference reading a POST
body), ``heartbeat``, ``record-response-time`` or ``record-response-times``
(``maxine bench http``'s POST bodies, rotating over the population; the last
carries 16 reports per request). The population is ``maxine bench http``'s:
10 services × 10 instances, with its metadata (weights, costs, zones,
coordinates). The server's settings come from the ``MAXINE_*`` environment:
``MAXINE_STRATEGIES=round-robin,advanced-ml`` counts what a report costs with
only those strategies offered. Before the POST workloads every strategy has
discovered every service (so the learning strategies have per-node state, as in
``maxine bench http``, where the POSTs run after the discoveries). A fake clock
advances 25 µs at every read, and ``advanced-ml``'s background refresh runs every
1,000 requests (every 50 ms at 20k requests/s), as the server's job does. As on the server,
client reports are learnt once per event-loop iteration (``Balancers.defer``),
and an iteration here ends every ``REPORTS_PER_ITERATION`` requests (what the
server averaged under ``maxine bench http``'s 64 connections). The ML hub's
rounds (every second, in a worker thread) are not run.
"""

from __future__ import annotations

import asyncio
import sys

import orjson

from ..api.app import create_app
from ..api.operations import Maxine
from ..server import one_blas_thread
from ..settings import Settings
from . import reference
from .http import batch_body, instance_body, write_body

REPORTS_PER_ITERATION = 14  # measured on the server: 13.8–14.6 reports per deferred settle
POST_PATHS = {"heartbeat": "/heartbeat", "record-response-time": "/record-response-time",
              "record-response-times": "/record-response-times", "reference-post": "/"}


def discover_scope(strategy: str, service: int) -> dict:
    return {"type": "http", "method": "GET", "path": "/discover", "headers": [],
            "query_string": f"serviceName=svc-{service}&loadBalancing={strategy}&clientId=c{service}&lat=41&lon=-2"
            .encode()}


class RsgiScope:
    """What the app reads of granian's RSGI scope."""

    proto = "http"
    client = "127.0.0.1:40000"

    def __init__(self, scope: dict):
        self.method, self.path = scope["method"], scope["path"]
        self.query_string = scope["query_string"].decode()
        self.headers = {k.decode(): v.decode() for k, v in scope["headers"]}


class Answers:
    """How many requests were answered 200, through either interface (the reference
    apps count no errors of their own, and a request left unanswered is a failure too)."""

    def __init__(self):
        self.ok = 0

    def count(self, status: int) -> None:
        if status == 200:
            self.ok += 1


class RsgiProtocol:
    """What the app calls of granian's RSGI protocol: the body, and one answer."""

    def __init__(self, current: list, answers: Answers):
        self.current = current
        self.answers = answers

    async def __call__(self) -> bytes:
        return self.current[0]["body"]

    def response_bytes(self, status, headers, body) -> None:
        self.answers.count(status)


class FakeClock:
    """The server's clock in these runs: 25 µs later at every read."""

    def __init__(self, start: float = 1_800_000_000.0, step: float = 25e-6):
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def population(clock, ttl: float = 60):
    """``(maxine, app, node ids)``: a server (settings from ``MAXINE_*``) on ``clock``
    with ``maxine bench http``'s population (10 services × 10 instances, the same
    metadata), and its app."""
    maxine = Maxine(Settings.from_env(), clock=clock)
    node_ids = []
    for s in range(10):
        for i in range(10):
            status, reply = maxine.register(instance_body(s, i, ttl))
            node_ids.append(reply["nodeId"])
    return maxine, create_app(maxine.settings, maxine), node_ids


async def drive(maxine, clock, request, count: int, n: int) -> None:
    """``n`` requests, ``await request(k % count)`` for the k-th, with what the server
    runs between requests: an event-loop iteration ends every ``REPORTS_PER_ITERATION``
    requests (deferred settles run), and advanced-ml's background refresh every 1,000."""
    learned = maxine.balancers.get("advanced-ml")
    for k in range(n):
        await request(k % count)
        if k % REPORTS_PER_ITERATION == REPORTS_PER_ITERATION - 1:
            await asyncio.sleep(0)
        if k % 1000 == 999 and getattr(learned, "_pending", None):
            learned.refresh_pending(clock.now, 10_000)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3) or argv[2:] not in ([], ["asgi"], ["rsgi"]):
        print("usage: python -m maxine.bench.inprocess STRATEGY|reference|reference-post|heartbeat|"
              "record-response-time|record-response-times REQUESTS [asgi|rsgi]", file=sys.stderr)
        return 2
    which, n = argv[0], int(argv[1])
    rsgi = argv[2:] == ["rsgi"]
    one_blas_thread()  # as the server does; more threads would also count their spinning
    clock = FakeClock()
    maxine, app, node_ids = population(clock)
    if which in POST_PATHS:
        if which == "reference-post":
            app = reference.Reference()
        bodies = [orjson.dumps(body) for body in
                  ([batch_body(node_ids, i) for i in range(len(node_ids))] if which == "record-response-times"
                   else [write_body(which, nid) for nid in node_ids])]
        scopes = [{"type": "http", "method": "POST", "path": POST_PATHS[which],
                   "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                   "query_string": b""}
                  for body in bodies]
        messages = [{"type": "http.request", "body": body, "more_body": False} for body in bodies]
    else:
        if which == "reference":
            app = reference.Reference()
        scopes = [discover_scope(which, s) for s in range(10)]
        messages = [{"type": "http.request", "body": b"", "more_body": False}] * 10
    count = len(scopes)
    current = [messages[0]]
    answers = Answers()
    if rsgi:
        scopes = [RsgiScope(scope) for scope in scopes]
        protocol = RsgiProtocol(current, answers)
        serve = app.__rsgi__

        async def request(i):
            current[0] = messages[i]
            await serve(scopes[i], protocol)
    else:
        async def request(i):
            current[0] = messages[i]
            await app(scopes[i], receive, send)

    async def receive():
        return current[0]

    async def send(message):
        if message["type"] == "http.response.start":
            answers.count(message["status"])

    async def warm_up():  # every strategy discovers every service, as in bench http before its POSTs
        for strategy in maxine.balancers.names():
            for s in range(10):
                await app(discover_scope(strategy, s), receive, send)

    async def run():
        if which in ("heartbeat", "record-response-time", "record-response-times"):
            await warm_up()
        answers.ok = 0  # the warm-up's answers are not the workload's
        maxine.balancers.defer = asyncio.get_running_loop().call_soon
        await drive(maxine, clock, request, count, n)
        return n - answers.ok

    errors = asyncio.run(run())
    if errors:  # the counts would be of the error path
        print(f"{errors} of {n} requests failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
