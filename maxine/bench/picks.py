"""Every strategy's ``GET /discover``, timed in process: what each strategy costs
over round-robin, in a minute, without a server or sockets.

    maxine bench picks [--requests 20000] [--rounds 5] [--reported] [--strategies a,b,...] [--json OUT]

The app is driven through granian's interface (RSGI), as ``maxine serve`` runs
it, with the population, fake clock and request loop of
:mod:`maxine.bench.inprocess` (``maxine bench http``'s 10 services × 10
instances and their metadata; settings from ``MAXINE_*``). Rounds interleave the
strategies, so a slow spell of the machine falls on all of them; each row is a
strategy's fastest round, in µs per discovery, and its ratio to round-robin's.
``--reported``: before every strategy's turn each node gets a load report and
client reports, as after ``maxine bench http``'s POST workloads (without them
the learned strategies have no per-node data, and some of their work is skipped).

Seconds, unlike the instruction counts of ``inprocess``, move with the machine;
compare within one run. Over HTTP a discovery costs ~20 µs of server CPU more
than it does here (granian's I/O), so a strategy x µs slower than round-robin
here runs at about 20 / (20 + x) of its requests/s there.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time

from ..progress import Progress
from ..server import one_blas_thread
from . import reference
from .http import write_body
from .inprocess import Answers, FakeClock, RsgiProtocol, RsgiScope, discover_scope, drive, population

ROUND_ROBIN = "round-robin"


class NotOffered(ValueError):
    pass


class DiscoveryFailed(RuntimeError):
    pass


def report_on_every_node(maxine, node_ids) -> None:
    """A load report and three client reports per node: what ``maxine bench http``'s
    heartbeat and record-response-time workloads leave behind."""
    for node_id in node_ids:
        maxine.heartbeat(write_body("heartbeat", node_id))
        for _ in range(3):
            maxine.record_response_time(write_body("record-response-time", node_id))


async def timed(maxine, clock, serve, protocol, strategy: str, n: int) -> float:
    """µs per discovery over ``n`` discoveries of ``strategy`` (``reference``: the raw app)."""
    scopes = [RsgiScope(discover_scope(strategy, s)) for s in range(10)]

    async def request(i):
        await serve(scopes[i], protocol)
    ok = protocol.answers.ok
    gc.collect()
    started = time.perf_counter()
    await drive(maxine, clock, request, len(scopes), n)
    seconds = time.perf_counter() - started
    if protocol.answers.ok - ok != n:
        raise DiscoveryFailed(f"{strategy}: {n - (protocol.answers.ok - ok)} of {n} discoveries failed")
    return seconds / n * 1e6




async def measure(strategies: list[str] | None, n: int, rounds: int, reported: bool, progress: bool = True) -> dict:
    """``{strategy: [µs per discovery, one per round]}``; ``strategies`` None: the raw
    reference app and every strategy the server offers."""
    clock = FakeClock()
    maxine, app, node_ids = population(clock, ttl=86_400.0)  # the fake clock runs for minutes
    offered = maxine.balancers.names()
    strategies = strategies or ["reference", *offered]
    unknown = [s for s in strategies if s != "reference" and s not in offered]
    if unknown:
        raise NotOffered(f"not offered: {', '.join(unknown)} (offered: {', '.join(offered)})")
    maxine.balancers.defer = asyncio.get_running_loop().call_soon
    protocol = RsgiProtocol([{"type": "http.request", "body": b"", "more_body": False}], Answers())
    raw = reference.Reference()
    results: dict[str, list[float]] = {s: [] for s in strategies}
    bar = Progress(rounds * len(strategies), "timing discoveries", enabled=progress)
    for _ in range(rounds):
        for strategy in strategies:
            if reported:
                report_on_every_node(maxine, node_ids)
                await asyncio.sleep(0)  # the reports' deferred settles
            serve = raw.__rsgi__ if strategy == "reference" else app.__rsgi__
            results[strategy].append(await timed(maxine, clock, serve, protocol, strategy, n))
            bar.step()
    return results


def table(results: dict) -> str:
    rr = min(results[ROUND_ROBIN]) if ROUND_ROBIN in results else None
    lines = ["| strategy | µs per discovery (fastest round) | median round | × round-robin |",
             "|---|---:|---:|---:|"]
    for strategy, values in results.items():
        ordered = sorted(values)
        best = ordered[0]
        ratio = f"{best / rr:.2f}" if rr else ""
        lines.append(f"| {strategy} | {best:.2f} | {ordered[len(ordered) // 2]:.2f} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="maxine bench picks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="discoveries per strategy per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reported", action="store_true",
                        help="give every node load and client reports before each strategy's turn")
    parser.add_argument("--strategies", default=None,
                        help="comma-separated (default: the raw reference app and every strategy offered)")
    parser.add_argument("--json", default=None, help="write {strategy: [µs per discovery per round]} here")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be at least 1")
    one_blas_thread()  # as the server does
    try:
        results = asyncio.run(measure(args.strategies.split(",") if args.strategies else None,
                                      args.requests, args.rounds, args.reported))
    except NotOffered as exc:
        parser.error(str(exc))
    except DiscoveryFailed as exc:  # the timings would be of the error path
        print(f"maxine bench picks: {exc}", file=sys.stderr)
        return 1
    print(table(results))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"requests": args.requests, "rounds": args.rounds, "reported": args.reported,
                       "us_per_discovery": results}, out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
