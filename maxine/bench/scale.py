"""``maxine bench scale``: a registry of 100,000 instances over HTTP.

Prints, for one ``maxine serve`` on 127.0.0.1:
- registration throughput while filling it through ``POST /register``;
- resident memory per instance above the empty server, measured once it is warm
  (discovery exercised, the ML hub's one-off imports done), the slope between
  10,000 and 100,000 instances, and, for comparison, the same instances
  registered in process without HTTP;
- ``GET /discover`` latency and server CPU per request at each size (flat
  means the per-request cost does not depend on the registry's size);
- the in-process pick cost of hashing strategies against a service's size;
- the longest stall of a discovery loop while 10,000 instances expire at once.

Bounded: every phase has a fixed count or duration; the server is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import httpx

from ..progress import Progress
from .http import machine, warm_up, wrk_discover
from .process import maxine_server
from .ring import hashed_service, pick_each


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _post_loop(host: str, port: int, path: str, bodies, counter: list, on_progress) -> None:
    """Keep-alive HTTP/1.1 POSTs of JSON bodies on one connection; a raw client,
    because httpx spends more CPU per request than the server does."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for body in bodies:
            payload = json.dumps(body).encode()
            writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), len(payload), payload))
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
            if b" 200 " not in status_line:
                raise RuntimeError(f"register failed: {status_line!r} {answer[:200]!r}")
            counter[0] += 1
            on_progress()
    finally:
        writer.close()


async def register_many(url: str, bodies: list[dict], concurrency: int, label: str) -> float:
    """Register every body over ``concurrency`` connections; returns wall seconds.
    Fails loudly on any non-200."""
    host, port = url.removeprefix("http://").split(":")
    counter = [0]
    step = max(1, len(bodies) // 50)
    bar = Progress(len(bodies), label)

    def on_progress():
        if counter[0] % step == 0 or counter[0] == len(bodies):
            bar.update(counter[0])

    shards = [bodies[i::concurrency] for i in range(concurrency)]
    started = time.perf_counter()
    await asyncio.gather(*(_post_loop(host, int(port), "/register", shard, counter, on_progress)
                           for shard in shards if shard))
    return time.perf_counter() - started


def population(instances: int, services: int, prefix: str = "svc", ttl: float = 600.0) -> list[dict]:
    per_service = max(1, instances // services)
    return [{"serviceName": f"{prefix}-{i // per_service}", "host": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
             "port": 8000 + i % 1000, "ttl": ttl, "metadata": {"version": "1.0.0", "zone": f"z{i % 3}"}}
            for i in range(instances)]


def hashing_pick_cost(sizes=(10, 100, 1000, 10000), picks: int = 20000, changes: int = 5) -> list[dict]:
    """In-process µs per consistent-hash pick (ring already built), the ring's
    first build, and the first pick after an instance leaves and after one joins
    (the ring's update: the longest a hashed discovery waits on a change), each
    the median and the worst of ``changes``. The registry's objects are frozen
    out of the garbage collector, as the server does
    (``api.app.freeze_long_lived``), so no full collection lands in a timed pick."""
    import gc

    rows = []
    for n in sizes:
        registry, strategy, ctx = hashed_service(n, time.time())
        gc.collect()
        gc.freeze()
        keys = [f"client-{k}" for k in range(picks)]
        build = _timed(pick_each, registry, strategy, ctx, keys[:1])
        t0 = time.perf_counter()
        pick_each(registry, strategy, ctx, keys)
        pick_us = (time.perf_counter() - t0) / picks * 1e6
        leave, join = [], []
        for c in range(changes):
            registry.deregister(registry.pool("big").nodes[n // 2].node_id)
            leave.append(_timed(pick_each, registry, strategy, ctx, keys[:1]))
            registry.register("big", f"10.1.0.{c}", 8000)
            join.append(_timed(pick_each, registry, strategy, ctx, keys[:1]))
        gc.unfreeze()
        rows.append({"instances": n, "pick_us": pick_us, "ring_build_ms": build,
                     "after_leave_ms": statistics.median(leave), "after_leave_max_ms": max(leave),
                     "after_join_ms": statistics.median(join), "after_join_max_ms": max(join)})
    return rows


def _timed(f, *args) -> float:
    t0 = time.perf_counter()
    f(*args)
    return (time.perf_counter() - t0) * 1e3


def in_process_bytes_per_instance(instances: int, services: int) -> float:
    """Resident bytes per instance when the same bodies are registered through
    ``Maxine.register`` in this process (no HTTP): the registry's own cost."""
    import gc

    import orjson

    from ..api import Maxine

    maxine = Maxine()
    bodies = [orjson.dumps(b) for b in population(instances, services)]
    gc.collect()
    before = rss_kib(os.getpid())
    for body in bodies:
        maxine.register(orjson.loads(body))
    gc.collect()
    return (rss_kib(os.getpid()) - before) * 1024 / instances


def discovery_stall_during_expiry(url: str, service: str, seconds: float) -> dict:
    """Sequential discoveries for ``seconds`` on one keep-alive connection: the
    longest single answer time. The connection is opened before timing starts,
    and this process's own objects (100,000 request bodies) are frozen so that
    its garbage collector does not pause the measurement (it did, by ~40 ms)."""
    import gc

    worst, count, errors = 0.0, 0, 0
    gc.collect()
    gc.freeze()
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            http.get("/discover", params={"serviceName": service})
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.perf_counter()
                status = http.get("/discover", params={"serviceName": service}).status_code
                worst = max(worst, time.perf_counter() - t0)
                count += 1
                errors += status != 200
    finally:
        gc.unfreeze()
    return {"requests": count, "max_ms": worst * 1e3, "errors": errors}


def bench(args) -> dict:
    report: dict = {"meta": {"command": "maxine bench scale " + " ".join(args.argv), "machine": machine()}}
    # Self-preservation would (rightly) refuse to evict 10 % of the registry at once;
    # this benchmark measures the eviction itself, so it is switched off here.
    env = {"MAXINE_SELF_PRESERVATION_THRESHOLD": "1.0", "MAXINE_EVENT_HISTORY": str(args.event_history)}
    with maxine_server(env=env) as srv:
        time.sleep(1.0)
        cold = rss_kib(srv.pid)
        probe = httpx.post(srv.url + "/register", json={"serviceName": "probe", "host": "127.0.0.1", "port": 1,
                                                        "ttl": 3600}).json()["nodeId"]
        ml_loaded = warm_up(srv, "probe", [probe])
        empty = rss_kib(srv.pid)
        resident = {}
        sizes, rows = [0, *sorted({s for s in (1000, 10000, args.instances) if s <= args.instances})], []
        bodies = population(args.instances, args.services)
        registered = 0
        for size in sizes:
            if size > registered:
                seconds = asyncio.run(register_many(srv.url, bodies[registered:size], args.concurrency,
                                                    f"registering to {size:>7}"))
                rows.append({"phase": f"register {registered}->{size}", "per_s": (size - registered) / seconds})
                registered = size
            time.sleep(2.0)  # steady state: let the post-burst housekeeping (gc.freeze, ML round) run first
            measured = wrk_discover(srv, "probe", args.duration)
            resident[size] = rss_kib(srv.pid)
            rows.append({"phase": f"discover at {size}", "instances": size, **measured})
            print(f"  {size:>7} instances: discover p50 {measured['p50_ms']:.2f} ms p99 {measured['p99_ms']:.2f} ms "
                  f"{measured['requests_per_s']:.0f}/s cpu {measured['cpu_us_per_request']:.1f} µs/req", file=sys.stderr)
        full = rss_kib(srv.pid)
        report["register"] = [r for r in rows if r["phase"].startswith("register")]
        report["discover_by_size"] = [r for r in rows if r["phase"].startswith("discover")]
        grown = [s for s in sizes if s >= 10000]
        report["memory"] = {"cold_kib": cold, "empty_kib": empty, "ml_stack_loaded": ml_loaded,
                            "full_kib": full, "instances": registered,
                            "bytes_per_instance": (full - empty) * 1024 / max(registered, 1),
                            "event_history": args.event_history}
        if len(grown) > 1:  # the slope between two sizes: no fixed cost in it at all
            report["memory"]["marginal_bytes_per_instance"] = {
                "from": grown[0], "to": grown[-1],
                "bytes": (resident[grown[-1]] - resident[grown[0]]) * 1024 / (grown[-1] - grown[0])}
        print(f"  memory: {empty / 1024:.0f} MiB empty and warm, {full / 1024:.0f} MiB with {registered} instances: "
              f"{report['memory']['bytes_per_instance']:.0f} B per instance", file=sys.stderr)

        # A mass expiry: args.expire instances with a 2 s lease, then a discovery loop across their deadline.
        rate = max(r["per_s"] for r in report["register"]) if report["register"] else 1000.0
        ttl = max(3.0, 2.0 * args.expire / rate + 2.0)  # all registered before the first lease runs out
        doomed = population(args.expire, max(1, args.expire // 10), prefix="doomed", ttl=ttl)
        started = time.monotonic()
        asyncio.run(register_many(srv.url, doomed, args.concurrency, f"registering {args.expire} leases of {ttl:.0f} s"))
        before = httpx.get(srv.url + "/health").json()["nodes"]
        # discover from before the first deadline until well after the last
        stall = discovery_stall_during_expiry(srv.url, "probe", max(2.0, started + ttl + 3.0 - time.monotonic()))
        after = httpx.get(srv.url + "/health").json()["nodes"]
        report["mass_expiry"] = {"expired": before - after, **stall}
        print(f"  mass expiry: {before - after} instances expired; longest discovery {stall['max_ms']:.1f} ms "
              f"over {stall['requests']} requests", file=sys.stderr)
    report["hashing"] = hashing_pick_cost()
    # in a fresh interpreter: this one's memory is already shaped by the HTTP phases
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        report["memory"]["in_process_bytes_per_instance"] = pool.submit(
            in_process_bytes_per_instance, args.instances, args.services).result()
    return report


def print_report(report: dict) -> None:
    print("\n| registry size | discover p50 ms | p99 ms | req/s | server CPU µs/req |")
    print("|---:|---:|---:|---:|---:|")
    for r in report["discover_by_size"]:
        print(f"| {r['instances']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests_per_s']:.0f} | "
              f"{r['cpu_us_per_request']:.1f} |")
    print("\n| registration phase | registrations/s |")
    print("|---|---:|")
    for r in report["register"]:
        print(f"| {r['phase']} | {r['per_s']:.0f} |")
    m = report["memory"]
    print(f"\nmemory: {m['cold_kib'] / 1024:.1f} MiB just started, {m['empty_kib'] / 1024:.1f} MiB empty and warm "
          f"(ML stack loaded: {m['ml_stack_loaded']}) -> {m['full_kib'] / 1024:.1f} MiB with {m['instances']} "
          f"instances = {m['bytes_per_instance']:.0f} bytes per instance (target <= 2048); registered in "
          f"process without HTTP: {m['in_process_bytes_per_instance']:.0f} bytes per instance")
    marginal = m.get("marginal_bytes_per_instance")
    if marginal:
        print(f"memory from {marginal['from']} to {marginal['to']} instances: {marginal['bytes']:.0f} bytes per instance")
    e = report["mass_expiry"]
    print(f"mass expiry: {e['expired']} instances expired while a discovery loop ran; longest answer "
          f"{e['max_ms']:.1f} ms over {e['requests']} requests (target <= 50 ms), errors {e['errors']}")
    print("\n| consistent-hash: service size | pick µs | ring build ms "
          "| pick after one leaves, ms (median / worst of 5) | after one joins |")
    print("|---:|---:|---:|---:|---:|")
    for r in report["hashing"]:
        print(f"| {r['instances']} | {r['pick_us']:.2f} | {r['ring_build_ms']:.1f} | "
              f"{r['after_leave_ms']:.1f} / {r['after_leave_max_ms']:.1f} | "
              f"{r['after_join_ms']:.1f} / {r['after_join_max_ms']:.1f} |")


def bench_scale_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="maxine bench scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--expire", type=int, default=10_000, help="instances in the mass expiry")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=int, default=3, help="seconds of wrk per registry size")
    parser.add_argument("--event-history", type=int, default=10_000)
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    args.argv = argv
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install wrk` (Debian package) and run again", file=sys.stderr)
        return 2
    report = bench(args)
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0
