"""Requests whose body the server leaves unread, each followed by a request on the
same connection: how many of those follow-ups are lost, and how many answers said
``Connection: close``. 127.0.0.1 only; one server, started and stopped here.

    python -m maxine.bench.unread N [NAME=VALUE,...]    # e.g. 1000 MAXINE_INTERFACE=asgi
"""

from __future__ import annotations

import sys

import httpx

from .process import maxine_server

BIG = b'{"a":"' + b"x" * (1 << 20) + b'"}'
CASES = {
    "404, content-length": lambda c: c.post("/no-such-route", content=BIG),
    "405, content-length": lambda c: c.put("/heartbeat", content=BIG),
    "GET /discover with a body": lambda c: c.request("GET", "/discover?serviceName=x", content=BIG),
    "404, chunked": lambda c: c.post("/no-such-route", content=iter([BIG[:10], BIG[10:]])),
    "413, content-length": lambda c: c.post("/register", content=BIG),
}


def run(n: int, env: dict | None = None) -> dict[str, tuple[int, int]]:
    """{case: (follow-ups lost, answers with Connection: close)} over ``n`` tries each."""
    results = {}
    with maxine_server(env=env or {}) as srv:
        for name, send in CASES.items():
            lost = closes = 0
            with httpx.Client(base_url=srv.url, timeout=5) as client:
                for _ in range(n):
                    try:
                        closes += send(client).headers.get("connection") == "close"
                        if client.get("/health").status_code != 200:
                            lost += 1
                    except httpx.HTTPError:
                        lost += 1
            results[name] = (lost, closes)
            print(f"{name:28s} follow-ups lost {lost}/{n}   Connection: close {closes}/{n}", flush=True)
    return results


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    env = dict(kv.split("=", 1) for kv in argv[1].split(",")) if len(argv) == 2 else {}
    results = run(int(argv[0]), env)
    return 1 if any(lost for lost, _ in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
