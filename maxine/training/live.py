"""``maxine bench live``: the lab's scenario format over real sockets.

Starts a real ``maxine serve`` (subprocess, 127.0.0.1, a free port), one tiny
asyncio HTTP server per scenario instance that sleeps per the scenario's
service-time model (``workers`` concurrent requests, FCFS queue, speed events,
fast failures answered 503 after ``fail_ms``), heartbeats carrying the
instances' load reports every ``heartbeat_ms``, and open-loop clients:
discover → call → report, the report reaching the registry the scenario's
``report_delay_ms`` after the answer (its information model, as in the
simulator). Every strategy runs on the same seeded workload with instances of
its own: one after the other, or side by side in worker processes
(``--parallel``). Bounded in requests and wall time; prints the same table as
``bench lb`` (no oracle; "pick µs" is the client's whole /discover round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from urllib.parse import urlencode

import numpy as np
import orjson

from ..bench.http import ml_stack_loaded, register_population, warm_up
from ..bench.process import maxine_server
from ..bench.rawhttp import content_length, exchange
from ..client import MaxineError, _discover_params, _report_body
from ..progress import Progress
from . import bench
from . import scenario as scenarios
from .simulator import _arrival_times, _service_work_ms, info_timing, reports_lost

LIVE_DEFAULT = {
    "name": "live-small",
    "description": "4 instances, one 5x slower; 20 ms mean exponential service; 60 % load; heartbeats every 250 ms.",
    "requests": 400,
    "warmup_fraction": 0.1,
    "timeout_ms": 2000.0,
    "seeds": [1001],
    "servers": [{"count": 3, "speed": 1.0, "workers": 1}, {"count": 1, "speed": 0.2, "workers": 1}],
    "service_time": {"dist": "exponential", "mean_ms": 20.0},
    "arrivals": {"kind": "poisson", "utilization": 0.6},
    "network_ms": {"base": 0.0, "jitter": 0.0},
    "events": [],
    "info": {"model": "registry", "heartbeat_ms": 250.0, "report_delay_ms": 0.0, "clients": 1},
}
LIVE_STRATEGIES = ("round-robin", "least-connections", "least-request", "least-response-time", "p2c-peak-ewma",
                   "c3", "prequal", "orca-wrr")


class Instance:
    """One simulated instance as a real HTTP server."""

    def __init__(self, index: int, speed: float, workers: int, work_ms: np.ndarray, fail_u: np.ndarray):
        self.index = index
        self.nominal = speed
        self.speed = speed
        self.workers = workers
        self.sem = asyncio.Semaphore(workers)
        self.work_ms = work_ms
        self.fail_u = fail_u
        self.cursor = 0
        self.fail_rate = 0.0
        self.fail_ms = 1.0
        self.in_flight = 0
        self.busy = 0
        self.busy_since = time.perf_counter()
        self.busy_area = 0.0
        self.rif_area = 0.0
        self.last = time.perf_counter()
        self.window_done = 0
        self.window_failed = 0
        self.window_svc: list[float] = []
        self.serving: dict[int, float] = {}  # start of service of each request in service
        self.started = 0
        self.window_busy_area = 0.0
        self.window_start = time.perf_counter()
        self.server = None
        self.port = None

    def _touch(self):
        now = time.perf_counter()
        dt = now - self.last
        self.busy_area += self.busy * dt
        self.rif_area += self.in_flight * dt
        self.last = now

    def _next(self):
        k = self.cursor % len(self.work_ms)
        self.cursor += 1
        return float(self.work_ms[k]), float(self.fail_u[k])

    async def handle(self, reader, writer):
        try:
            while True:
                length = content_length(await reader.readuntil(b"\r\n\r\n"))
                if length:
                    await reader.readexactly(length)
                work, u = self._next()
                if self.fail_rate > 0.0 and u < self.fail_rate:
                    await asyncio.sleep(self.fail_ms / 1000.0)
                    self.window_done += 1
                    self.window_failed += 1
                    self.window_svc.append(self.fail_ms)
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nfail")
                    await writer.drain()
                    continue
                self._touch()
                self.in_flight += 1
                async with self.sem:
                    self._touch()
                    self.busy += 1
                    t0 = time.perf_counter()
                    self.started += 1
                    token = self.started
                    self.serving[token] = t0
                    try:
                        await asyncio.sleep(work / self.speed / 1000.0)
                    finally:
                        del self.serving[token]
                    self._touch()
                    self.busy -= 1
                    self.window_svc.append((time.perf_counter() - t0) * 1000.0)
                self.in_flight -= 1
                self.window_done += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass  # the client went away, or the run is over and the server is closing
        finally:
            writer.close()

    async def start(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def load_report(self) -> dict:
        self._touch()
        now = time.perf_counter()
        span = max(now - self.window_start, 1e-6)
        cpu = min(1.0, (self.busy_area - self.window_busy_area) / (self.workers * span))
        svc = sorted(self.window_svc)
        report = {"inFlight": self.in_flight, "cpu": cpu, "qps": self.window_done / span,
                  "errorRate": self.window_failed / self.window_done if self.window_done else 0.0}
        # p50 service time of the window; a request in service for longer is a lower bound the
        # instance knows about (as the simulator's instances report)
        oldest = (now - min(self.serving.values())) * 1000.0 if self.serving else 0.0
        if svc:
            report["latencyMs"] = max(svc[len(svc) // 2], oldest)
        elif oldest > 0.0:
            report["latencyMs"] = oldest
        self.window_done = self.window_failed = 0
        self.window_svc = []
        self.window_busy_area = self.busy_area
        self.window_start = now
        return report


class StreamHTTP:
    """HTTP/1.1 over kept-alive asyncio streams to 127.0.0.1, a pool of connections per port.

    The harness's hot path (discover, call, report, heartbeats) goes through this rather than
    AsyncMaxineClient: at the lab's rates httpx's connection pool, which scans every connection
    for every queued request (encode/httpcore#1035), made the client, not the strategies, the
    bottleneck: /discover round trips of seconds and most calls timing out, for every strategy."""

    def __init__(self):
        self.idle: dict[int, list] = {}

    async def request(self, port: int, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body); raises OSError or asyncio.IncompleteReadError when the connection fails.
        A cancelled exchange (a timeout around it) closes its connection."""
        idle = self.idle.setdefault(port, [])
        reader, writer = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        try:
            answer = await exchange(reader, writer, method, target, body)
        except BaseException:
            writer.close()
            raise
        idle.append((reader, writer))
        return answer

    def close(self) -> None:
        for conns in self.idle.values():
            for _, writer in conns:
                writer.close()
        self.idle.clear()


class LabClient:
    """The registry calls of the hot path, in the wire shapes of maxine.client."""

    def __init__(self, http: StreamHTTP, port: int):
        self.http = http
        self.port = port

    async def _call(self, method: str, target: str, body: dict | None = None) -> dict:
        status, payload = await self.http.request(self.port, method, target,
                                                  orjson.dumps(body) if body is not None else b"")
        if status >= 400:
            raise MaxineError(status, orjson.loads(payload) if payload else {})
        return orjson.loads(payload) if payload else {}

    async def discover(self, service: str, strategy: str) -> dict:
        query = urlencode(_discover_params(service, strategy, None, None, None, {}))
        return await self._call("GET", "/discover?" + query)

    async def report(self, node_id: str, elapsed_ms: float, success: bool) -> None:
        await self._call("POST", "/record-response-time", _report_body(node_id, elapsed_ms, success, None))

    async def heartbeat(self, node_id: str, **load) -> None:
        await self._call("POST", "/heartbeat", {"nodeId": node_id, **load})


async def run_strategy(url: str, sc: dict, strategy: str, seed: int, instances: list[Instance],
                       max_seconds: float) -> dict:
    from ..client import AsyncMaxineClient

    n_req = int(sc["requests"])
    rng = np.random.default_rng(seed)
    mean_s = float(sc["service_time"]["mean_ms"]) / 1000.0
    capacity = sum(i.workers * i.nominal for i in instances) / mean_s
    rate = float(sc["arrivals"]["utilization"]) * capacity
    arrivals = _arrival_times(rng, sc["arrivals"], rate, n_req)
    horizon = float(arrivals[-1])
    timeout = float(sc["timeout_ms"]) / 1000.0
    heartbeat, report_delay = info_timing(sc["info"])
    lost = reports_lost(sc["info"], seed, n_req)
    service = f"lab-{strategy}-{seed}-{os.getpid()}"

    latency = [None] * n_req
    ok = [False] * n_req
    discover_s = [0.0]
    dispatched = [0] * len(instances)
    by_port = {inst.port: inst for inst in instances}

    http = StreamHTTP()
    lab = LabClient(http, int(url.rsplit(":", 1)[1]))
    async with AsyncMaxineClient(url, timeout=5.0) as maxine:  # registration and clean-up only
        node_ids = []
        for inst in instances:
            node_ids.append(await maxine.register(service, "127.0.0.1", inst.port, metadata={"lab": True},
                                                  ttl=60.0, heartbeat=False))

        stop = asyncio.Event()

        async def heartbeats(inst, node_id, phase):
            await asyncio.sleep(phase)
            while not stop.is_set():
                try:
                    await lab.heartbeat(node_id, **inst.load_report())
                except Exception:
                    pass
                try:
                    await asyncio.wait_for(stop.wait(), heartbeat)
                except asyncio.TimeoutError:
                    pass

        async def events(t0):
            todo = []
            for ev in sc["events"]:
                if "every_ms" in ev:
                    continue
                for i in ev["servers"]:
                    todo.append((float(ev.get("start", 0.0)) * horizon, int(i), ev, True))
                    todo.append((float(ev.get("end", 1.0)) * horizon, int(i), ev, False))
            todo.sort(key=lambda e: e[0])
            for at, i, ev, begin in todo:
                delay = t0 + at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                inst = instances[i]
                if "speed" in ev:
                    inst.speed = float(ev["speed"]) if begin else inst.nominal
                if "fail_rate" in ev:
                    inst.fail_rate = float(ev["fail_rate"]) if begin else 0.0
                    inst.fail_ms = float(ev.get("fail_ms", 1.0))

        async def one(r):
            t_start = time.perf_counter()
            try:
                d0 = time.perf_counter()
                found = await asyncio.wait_for(lab.discover(service, strategy), 5.0)
                discover_s[0] += time.perf_counter() - d0
                port = int(found["port"]) if "port" in found else int(found["address"].rsplit(":", 1)[1])
                inst = by_port.get(port)
                if inst is not None:
                    dispatched[inst.index] += 1
                c0 = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(http.request(port, "GET", "/work"), timeout)
                    success = status < 500
                    elapsed = (time.perf_counter() - c0) * 1000.0
                except asyncio.TimeoutError:
                    success, elapsed = False, timeout * 1000.0
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    success, elapsed = False, (time.perf_counter() - c0) * 1000.0
                # the caller's latency ends with the call; the report after it is not part of it
                latency[r] = (time.perf_counter() - t_start) * 1000.0 if success else max(
                    elapsed, (time.perf_counter() - t_start) * 1000.0)
                ok[r] = success
                if lost is not None and lost[r]:
                    return  # the scenario's information model: this caller never reports
                if report_delay:  # and reports reach the registry late
                    await asyncio.sleep(report_delay)
                await asyncio.wait_for(lab.report(found["nodeId"], elapsed, success), 5.0)
            except Exception:
                latency[r] = timeout * 1000.0
                ok[r] = False

        hb_tasks = [asyncio.create_task(heartbeats(inst, nid, heartbeat * k / len(instances)))
                    for k, (inst, nid) in enumerate(zip(instances, node_ids))]
        await asyncio.sleep(heartbeat * 1.2)  # one load report from every instance first
        t0 = time.perf_counter()
        ev_task = asyncio.create_task(events(t0))
        tasks = []
        for r in range(n_req):
            delay = t0 + float(arrivals[r]) - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() - t0 > max_seconds:
                break
            tasks.append(asyncio.create_task(one(r)))
        if tasks:
            await asyncio.wait(tasks, timeout=timeout + 5.0)
        wall = time.perf_counter() - t0
        stop.set()
        ev_task.cancel()
        await asyncio.gather(*hb_tasks, ev_task, return_exceptions=True)
        for inst in instances:
            inst._touch()
        http.close()
        for nid in node_ids:
            try:
                await maxine.http.request("DELETE", "/deregister", json={"nodeId": nid})
            except Exception:
                pass

    warm = int(float(sc["warmup_fraction"]) * len(tasks))
    lat = np.array([x if x is not None else timeout * 1000.0 for x in latency[warm:len(tasks)]])
    good = np.array(ok[warm:len(tasks)], dtype=bool)
    rifs = [inst.rif_area / max(wall, 1e-9) for inst in instances]
    mean_rif = sum(rifs) / len(rifs)
    p50, p99, p999 = np.percentile(lat, [50, 99, 99.9]).tolist() if len(lat) else (0.0, 0.0, 0.0)
    total = max(sum(dispatched), 1)
    return {
        "scenario": sc["name"], "strategy": strategy, "seed": seed, "requests": len(lat),
        "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
        "error_rate": float(1.0 - good.mean()) if len(good) else 0.0,
        "goodput": float(good.sum()) / max(wall, 1e-9),
        "imbalance": max(rifs) / mean_rif if mean_rif > 0 else 1.0,
        "decision_us": discover_s[0] / max(len(tasks), 1) * 1e6,
        "share": [d / total for d in dispatched],
        "timeline_p99_ms": [], "timeline_t_s": [], "wall_s": wall,
    }


def workload_instances(sc: dict, seed: int) -> list[Instance]:
    """The scenario's instances, each with its own seeded work sequence: the same for every strategy."""
    rng = np.random.default_rng(seed)
    n = int(sc["requests"])
    instances = []
    for group in sc["servers"]:
        for _ in range(int(group.get("count", 1))):
            instances.append(Instance(len(instances), float(group.get("speed", 1.0)), int(group.get("workers", 1)),
                                      _service_work_ms(rng, sc["service_time"], n), rng.random(n)))
    return instances


async def run_on_own_instances(url: str, sc: dict, strategy: str, seed: int, deadline: float) -> dict | None:
    """One strategy on one seed's workload, with instances of its own; None when ``deadline``
    (``time.time()``) leaves no time for it."""
    left = deadline - time.time()
    if left <= 1.0:
        return None
    instances = workload_instances(sc, seed)
    for inst in instances:
        await inst.start()
    try:
        return await run_strategy(url, sc, strategy, seed, instances, left)
    finally:
        for inst in instances:
            inst.server.close()


def _run_in_worker(url: str, sc: dict, strategy: str, seed: int, deadline: float) -> dict | None:
    return asyncio.run(run_on_own_instances(url, sc, strategy, seed, deadline))


def _worker_ready(barrier) -> None:
    """Import everything a run needs, then wait for the other workers: a run that started while
    another worker was still importing would share the machine with that import, unlike its partner."""
    from ..client import AsyncMaxineClient  # noqa: F401

    barrier.wait(timeout=120)


async def run_live(sc: dict, strategies: list[str], seeds: list[int], max_seconds: float, progress: bool,
                   port: int | None = None, log_path: str = "/tmp/maxine-bench-live.log",
                   parallel: int = 1, telemetry_dir: str | None = None) -> list[dict]:
    """Every strategy on every seed's workload, against one server.

    ``parallel == 1``: one run after the other, the order of the strategies rotated from seed to seed
    so none always runs first or last. ``parallel > 1``: up to that many runs at once, each in a
    process of its own (its own client and instances), submitted seed by seed, so the strategies of
    one seed run side by side under the same machine conditions."""
    results = []
    deadline = time.time() + max_seconds
    server_args = ["--telemetry-log", "true", "--data-dir", telemetry_dir] if telemetry_dir else []
    with open(log_path, "wb") as log, maxine_server(server_args, port=port, output=log) as server:  # stopped by PID
        # the ML hub's first forecast imports statsmodels (seconds of CPU, once per process):
        # unwarmed, the first strategy measured paid for it (90 ms /discover round trips)
        print("warming up until the ML stack is loaded", file=sys.stderr)
        await asyncio.to_thread(_warm, server)
        bar = Progress(len(strategies) * len(seeds), "runs", enabled=progress)
        jobs = [(strategy, seed) for k, seed in enumerate(seeds)
                for strategy in strategies[k % len(strategies):] + strategies[:k % len(strategies)]]
        if parallel <= 1:
            for strategy, seed in jobs:
                result = await run_on_own_instances(server.url, sc, strategy, seed, deadline)
                if result is None:
                    print(f"\nstopping: --max-seconds reached before {strategy} (seed {seed})", file=sys.stderr)
                    break
                results.append(result)
                bar.step(f"{strategy} seed {seed}")
        else:
            results = await asyncio.to_thread(_run_parallel, server.url, sc, jobs, deadline, parallel, bar)
    return complete_seeds(results, strategies)


def _run_parallel(url: str, sc: dict, jobs: list[tuple[str, int]], deadline: float, parallel: int,
                  bar: Progress) -> list[dict]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results, skipped = [], 0
    workers = min(parallel, len(jobs))
    spawn = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=spawn, initializer=_worker_ready,
                               initargs=(spawn.Barrier(workers),))
    try:
        futures = {pool.submit(_run_in_worker, url, sc, strategy, seed, deadline): (strategy, seed)
                   for strategy, seed in jobs}
        for future in as_completed(futures):
            result = future.result()
            if result is None:
                skipped += 1
                continue
            results.append(result)
            strategy, seed = futures[future]
            bar.step(f"{strategy} seed {seed}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # the workers exit; each closes its own instances
    if skipped:
        print(f"\nstopping: --max-seconds reached before {skipped} runs", file=sys.stderr)
    return sorted(results, key=lambda r: (r["seed"], r["strategy"]))


def complete_seeds(results: list[dict], strategies: list[str]) -> list[dict]:
    """The results of the seeds every strategy finished: averaging over unlike workloads would mislead."""
    done: dict[int, set] = {}
    for r in results:
        done.setdefault(r["seed"], set()).add(r["strategy"])
    dropped = sorted(seed for seed, names in done.items() if names != set(strategies))
    if dropped:
        print(f"dropped seeds not every strategy finished: {dropped}", file=sys.stderr)
    return [r for r in results if r["seed"] not in dropped]


def _warm(server) -> None:
    """Drive discovery of a throwaway instance until the ML stack is loaded, then deregister it."""
    import httpx

    (body,) = register_population(server.url, 1, 1)
    warm_up(server, body["serviceName"], [body["nodeId"]])
    httpx.request("DELETE", server.url + "/deregister", timeout=10,
                  json={"serviceName": body["serviceName"], "nodeId": body["nodeId"]}).raise_for_status()
    if not ml_stack_loaded(server.pid):
        print("warning: the ML stack did not load during the warm-up", file=sys.stderr)


def plot_seeds(path: str, results: list[dict]) -> None:
    """p99 per seed, one line per strategy, one panel per scenario: the paired comparison at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios_seen = list(dict.fromkeys(r["scenario"] for r in results))
    fig, axes = plt.subplots(1, len(scenarios_seen), figsize=(6 * len(scenarios_seen), 4.5), squeeze=False)
    for ax, name in zip(axes[0], scenarios_seen):
        runs = [r for r in results if r["scenario"] == name]
        seeds = sorted({r["seed"] for r in runs})
        for strategy in sorted({r["strategy"] for r in runs}):
            by_seed = {r["seed"]: r["p99_ms"] for r in runs if r["strategy"] == strategy}
            ax.plot([str(s) for s in seeds], [by_seed.get(s) for s in seeds], marker="o", label=strategy)
        ax.set_title(f"{name}: p99 per seed (live)")
        ax.set_xlabel("workload seed")
        ax.set_ylabel("p99 latency (ms)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def wins(results: list[dict]) -> dict[str, int]:
    """Per strategy: on how many seeds it had the lowest p99 (among the seeds every strategy finished)."""
    by_seed: dict[int, list[dict]] = {}
    for r in results:
        by_seed.setdefault(r["seed"], []).append(r)
    names = {r["strategy"] for r in results}
    count = dict.fromkeys(sorted(names), 0)
    for rs in by_seed.values():
        if {r["strategy"] for r in rs} == names:
            count[min(rs, key=lambda r: r["p99_ms"])["strategy"]] += 1
    return count


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="maxine bench live",
        description="Run a scenario over real sockets: a real maxine server, HTTP instances that sleep per "
                    "the scenario, and clients that discover → call → report.")
    parser.add_argument("--scenario", metavar="FILE", help="scenario JSON file or built-in name "
                        "(default: a small built-in live scenario)")
    parser.add_argument("--strategies", help=f"comma-separated (default: {','.join(LIVE_STRATEGIES)})")
    parser.add_argument("--requests", type=int, help="requests per strategy (overrides the scenario)")
    parser.add_argument("--seeds", help="comma-separated workload seeds (default: the scenario's first seed); "
                        "results are averaged over seeds")
    parser.add_argument("--seed", type=int, help="one workload seed (same as --seeds N)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="wall-clock bound for the whole run")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="run up to N strategies at once, each in a process of its own with its own instances "
                             "(default 1: one after the other)")
    parser.add_argument("--port", type=int, help="port for the maxine server (default: a free one)")
    parser.add_argument("--telemetry-log", metavar="DIR", help="run the server with its telemetry log on, "
                        "written under DIR/telemetry (for `maxine models eval advanced-ml V --data DIR/telemetry`)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="draw p99 per seed per strategy (matplotlib)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        sc = scenarios.by_name(args.scenario) if args.scenario else scenarios.load(LIVE_DEFAULT)
    except scenarios.ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.requests:
        sc["requests"] = args.requests
    strategies = [s.strip() for s in args.strategies.split(",")] if args.strategies else list(LIVE_STRATEGIES)
    from ..balancers import factories

    unknown = [s for s in strategies if s not in factories()]
    if unknown:
        print(f"error: not production strategies: {unknown}", file=sys.stderr)
        return 2
    try:
        seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
                 else [args.seed if args.seed is not None else sc["seeds"][0]])
    except ValueError:
        print(f"error: --seeds takes comma-separated integers, got {args.seeds!r}", file=sys.stderr)
        return 2
    if args.parallel < 1:
        print(f"error: --parallel takes a positive integer, got {args.parallel}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    results = asyncio.run(run_live(sc, strategies, seeds, args.max_seconds, not args.no_progress, args.port,
                                   parallel=args.parallel, telemetry_dir=args.telemetry_log))
    wall = time.perf_counter() - t0
    if not results:
        print("error: no strategy finished", file=sys.stderr)
        return 1
    rows = bench.aggregate(results)
    marks = bench.mark(rows)
    sys.stdout.write(bench.format_tables(rows, marks, {sc["name"]: sc.get("description", "")}))
    print(f"\nlive: {len(results)} runs (strategy × seed) × {sc['requests']} requests in {wall:.1f}s wall "
          "('pick µs' = client-side /discover round trip)")
    if len(seeds) > 1:
        print("lowest p99, seeds won: " + ", ".join(f"{s} {n}" for s, n in wins(results).items()))
    if args.json:
        bench.write_json(args.json, rows, results, marks, {"wall_s": round(wall, 2), "mode": "live",
                                                          "argv": ["maxine", "bench", "live", *argv]})
        print(f"wrote {args.json}")
    if args.plot:
        plot_seeds(args.plot, results)
        print(f"wrote {args.plot}")
    return 0
