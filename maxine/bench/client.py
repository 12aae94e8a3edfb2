"""``maxine bench client``: what the Python clients add to a caller, with the
report awaited (``report``) and queued (``report_later``, what ``call`` does).

It starts ``maxine serve`` on a free loopback port, registers one instance, and
alternates the two ways, so a slow spell of a shared machine falls on both:
sequential discover + report with ``MaxineClient`` (milliseconds added per
call), then ``--concurrency`` discover + report pairs at once with
``AsyncMaxineClient`` (pairs per second, queued reports flushed inside the
timing). Load goes to 127.0.0.1 only; the server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from statistics import mean

from ..client import AsyncMaxineClient, MaxineClient
from .http import machine
from .process import maxine_server

WAYS = ("awaited", "queued")


def sequential(url: str, calls: int, rounds: int) -> dict[str, list[float]]:
    """Milliseconds added per call, per way, one figure per round."""
    added: dict[str, list[float]] = {way: [] for way in WAYS}
    with MaxineClient(url) as client:
        client.register("bench-client", "127.0.0.1", 7000, heartbeat=False)
        for k in range(rounds):
            for way in WAYS:
                report = client.report if way == "awaited" else client.report_later
                started = time.perf_counter()
                for _ in range(calls):
                    report(client.discover("bench-client")["nodeId"], 5.0)
                added[way].append((time.perf_counter() - started) / calls * 1e3)
                client.flush()
                print(f"  sync round {k + 1}: report {way}: {added[way][-1]:.2f} ms per call", file=sys.stderr)
    return added


async def concurrent(url: str, concurrency: int, rounds: int) -> dict[str, list[float]]:
    """discover + report pairs per second, per way, one figure per round."""
    rates: dict[str, list[float]] = {way: [] for way in WAYS}
    async with AsyncMaxineClient(url) as client:
        await client.register("bench-client-async", "127.0.0.1", 7001, heartbeat=False)

        async def pair(way: str) -> None:
            node_id = (await client.discover("bench-client-async"))["nodeId"]
            if way == "awaited":
                await client.report(node_id, 5.0)
            else:
                client.report_later(node_id, 5.0)

        for k in range(rounds):
            for way in WAYS:
                started = time.perf_counter()
                await asyncio.gather(*(pair(way) for _ in range(concurrency)))
                await client.flush()
                rates[way].append(concurrency / (time.perf_counter() - started))
                print(f"  async round {k + 1}: {concurrency} at once, report {way}: {rates[way][-1]:.0f} pairs/s",
                      file=sys.stderr)
    return rates


def bench_client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="maxine bench client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per way and round (default 500)")
    parser.add_argument("--concurrency", type=int, default=200, help="concurrent pairs per way and round (default 200)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if min(args.calls, args.concurrency, args.rounds) < 1:
        print("error: --calls, --concurrency and --rounds must be at least 1", file=sys.stderr)
        return 2
    with maxine_server(["--log-level", "warning"]) as server:
        added = sequential(server.url, args.calls, args.rounds)
        rates = asyncio.run(concurrent(server.url, args.concurrency, args.rounds))
    print("\n| client | report awaited | report queued (call) | queued ÷ awaited |")
    print("|---|---:|---:|---:|")
    print(f"| MaxineClient, sequential: ms added per call | {mean(added['awaited']):.2f} | "
          f"{mean(added['queued']):.2f} | {mean(added['queued']) / mean(added['awaited']):.2f} |")
    print(f"| AsyncMaxineClient, {args.concurrency} at once: pairs/s | {mean(rates['awaited']):.0f} | "
          f"{mean(rates['queued']):.0f} | {mean(rates['queued']) / mean(rates['awaited']):.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": {"command": "maxine bench client " + " ".join(argv), "machine": machine()},
                       "sequential_ms_per_call": added, "concurrent_pairs_per_s": rates}, f, indent=2)
    return 0
