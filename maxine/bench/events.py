"""Event propagation benchmark: deregistration -> SSE event at N subscribers.

    maxine bench events [--subscribers 100] [--events 200] [--persistence memory|file] [--fsync always]

Starts a real ``maxine serve`` on a free loopback port (or uses ``--url``),
registers ``--events`` instances, opens ``--subscribers`` SSE streams on
``/events/stream?serviceName=...`` and deregisters the instances one at a
time. For every (deregistration, subscriber) pair it measures the time from
sending the DELETE to the event's bytes arriving at that subscriber, and
prints p50/p90/p99/max (the issue's target: p99 <= 50 ms for 100
subscribers). The next deregistration starts once every subscriber has the
previous event, so each figure is one change fanned out to all subscribers.
Also prints the write acknowledgement latency (``--persistence file
--fsync always`` shows the cost of fsync per change).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time

from .process import maxine_server
from .rawhttp import exchange

MARKER = b"event: service_deregistered\n"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


class Subscriber:
    def __init__(self):
        self.arrivals: list[float] = []
        self.ready = asyncio.Event()
        self.changed = asyncio.Event()

    async def run(self, host: str, port: int, service: str) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /events/stream?serviceName={service} HTTP/1.1\r\nHost: {host}\r\n"
                     f"Accept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("stream closed before headers")
            buf += chunk
        buf = buf.split(b"\r\n\r\n", 1)[1]
        self.ready.set()
        try:
            while True:
                n = buf.count(MARKER)
                if n:
                    now = time.perf_counter()
                    self.arrivals.extend([now] * n)
                    self.changed.set()
                    buf = buf[buf.rfind(MARKER) + len(MARKER):]
                buf = buf[-len(MARKER):]
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buf += chunk
        finally:
            writer.close()


async def _request(reader, writer, method: str, path: str, body: dict) -> tuple[int, bytes]:
    return await exchange(reader, writer, method, path, json.dumps(body).encode(), host="bench")


async def _bench(host: str, port: int, subscribers: int, events: int, service: str) -> dict:
    reader, writer = await asyncio.open_connection(host, port)
    for i in range(events):
        status, body = await _request(reader, writer, "POST", "/register",
                                      {"serviceName": service, "host": "127.0.0.1", "port": 10000 + i, "ttl": 600})
        if status != 200:
            raise RuntimeError(f"register failed: {status} {body[:200]!r}")
    subs = [Subscriber() for _ in range(subscribers)]
    tasks = [asyncio.create_task(s.run(host, port, service)) for s in subs]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 30)
    await asyncio.sleep(0.2)
    latencies: list[float] = []
    acks: list[float] = []
    for i in range(events):
        t0 = time.perf_counter()
        status, _ = await _request(reader, writer, "DELETE", "/deregister",
                                   {"nodeId": f"{service}:127.0.0.1:{10000 + i}"})
        acks.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"deregister failed: {status}")
        deadline = time.perf_counter() + 5
        for s in subs:
            while len(s.arrivals) <= i:
                s.changed.clear()
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise RuntimeError(f"event {i} did not reach every subscriber within 5 s")
                try:
                    await asyncio.wait_for(s.changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
            latencies.append(s.arrivals[i] - t0)
        await asyncio.sleep(0.005)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    writer.close()
    ms = [x * 1000 for x in latencies]
    ack_ms = [x * 1000 for x in acks]
    return {
        "subscribers": subscribers, "events": events, "samples": len(ms),
        "propagation_ms": {"p50": _percentile(ms, 50), "p90": _percentile(ms, 90), "p99": _percentile(ms, 99),
                           "max": max(ms)},
        "deregister_ack_ms": {"p50": _percentile(ack_ms, 50), "p99": _percentile(ack_ms, 99), "max": max(ack_ms)},
    }


def bench_events_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="maxine bench events", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--url", help="use a running server (http://host:port) instead of starting one")
    parser.add_argument("--persistence", default="memory", choices=("memory", "file", "redis"))
    parser.add_argument("--fsync", default="always", choices=("always", "interval", "never"))
    parser.add_argument("--target-p99-ms", type=float, default=50.0)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    stack = contextlib.ExitStack()
    if args.url:
        from urllib.parse import urlparse

        u = urlparse(args.url)
        host, port = u.hostname, u.port or 80
    else:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="maxine-bench-"))
        env = {"MAXINE_PERSISTENCE": args.persistence, "MAXINE_DATA_DIR": tmp, "MAXINE_FSYNC": args.fsync,
               "MAXINE_REDIS_PREFIX": f"maxine-bench-{os.getpid()}"}
        try:
            server = stack.enter_context(maxine_server(env=env, output=None))
        except RuntimeError as exc:
            print(f"server did not start: {exc}", file=sys.stderr)
            return 1
        host, port = "127.0.0.1", server.port
    try:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        result = asyncio.run(_bench(host, port, args.subscribers, args.events, f"bench-events-{os.getpid()}"))
    finally:
        stack.close()  # stops the server by its PID
        if args.persistence == "redis" and not args.url:
            try:
                import redis

                client = redis.Redis()
                keys = list(client.scan_iter(match=f"maxine-bench-{os.getpid()}:*"))
                if keys:
                    client.delete(*keys)
            except Exception:
                pass
    result["machine"] = f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
    result["persistence"] = args.persistence + (f" fsync={args.fsync}" if args.persistence == "file" else "")
    ok = result["propagation_ms"]["p99"] <= args.target_p99_ms
    result["target_p99_ms"] = args.target_p99_ms
    result["pass"] = ok
    if args.json:
        print(json.dumps(result))
    else:
        p, a = result["propagation_ms"], result["deregister_ack_ms"]
        print(f"event propagation, {result['subscribers']} SSE subscribers x {result['events']} deregistrations "
              f"({result['persistence']}; {result['machine']})")
        print(f"  deregistration -> event at subscriber: p50 {p['p50']:.2f} ms  p90 {p['p90']:.2f} ms  "
              f"p99 {p['p99']:.2f} ms  max {p['max']:.2f} ms   (target p99 <= {args.target_p99_ms:g} ms: "
              f"{'PASS' if ok else 'FAIL'})")
        print(f"  deregistration acknowledged:       p50 {a['p50']:.2f} ms  p99 {a['p99']:.2f} ms  max {a['max']:.2f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(bench_events_main(sys.argv[1:]))
