"""``maxine bench http``: HTTP throughput of the hot routes against a raw ASGI
reference measured in the same run, on the same server stack.

Load goes to 127.0.0.1 only; every run is bounded by ``--duration``; every
process started is stopped by its PID. Besides requests/s and latency it
reports the server's CPU time per request (all its threads, from /proc),
which is steadier than requests/s on a shared machine.

There are two references on a raw ASGI server running beside maxine: GET (a
fixed small JSON body) for ``/discover``, and POST (the same, after reading the
request body) for the JSON-body writes, which print their ratio to both. Each
is measured in every round, with the other workloads, and again at the end.
The references get the same requests as what they are compared with: the
round-robin ``/discover`` request lines, the ``/record-response-time`` bodies
(on this VM that alone moved the reference by 0–30 %); the table also
shows the GET reference driven by plain ``GET /``, the lighter load earlier
runs used. The ratios are to these raw ASGI references (issue #6's
definition). When maxine runs on granian's RSGI (the default), the same
reference app is also measured over RSGI, so the table shows how much of the
gain is the interface.

Every compared workload runs right next to what it is compared with, in every
round: round-robin before and after each other strategy, the GET reference
before the first and after the last round-robin run, the POST reference
between the writes. The verdicts use the median of these back-to-back ratios
(a shared machine's slow spells outlast two runs, not a whole round); the
table shows them beside the ratios of whole-run means. A workload's p99 is of
all its requests over all its runs, pooled from each run's percentiles.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass

import httpx

from .process import ServerProcess, maxine_server, server_process

TARGETS = {  # from the performance issue: ratios measured in one run
    "discover_vs_reference": 0.90,
    "strategy_vs_round_robin": 0.85,
    "write_vs_post_reference": 0.80,
    "discover_p99_ms": 10.0,
}
DEFAULT_STRATEGIES = ["round-robin", "random", "weighted-random", "least-connections", "weighted-least-connections",
                      "power-of-two-choices", "consistent-hash", "ip-hash", "geo-aware", "cost-aware",
                      "least-response-time", "p2c-peak-ewma", "least-request", "c3", "prequal", "orca-wrr",
                      "health-score", "predictive", "ai-driven", "advanced-ml"]
WRITES = ["heartbeat", "record-response-time", "record-response-times", "register"]
BATCH = 16  # reports per POST /record-response-times request
REFERENCE_NAMES = ("reference", "reference (after)")
POST_REFERENCE_NAMES = ("reference POST (reads body)", "reference POST (after)")
RSGI_NAMES = ("reference RSGI", "reference RSGI (after)")
RSGI_POST_NAMES = ("reference RSGI POST", "reference RSGI POST (after)")
PLAIN_REFERENCE = "reference, plain GET /"
BATCHED = f"POST /record-response-times ({BATCH} reports)"


@dataclass
class Result:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    requests: int
    errors: int
    percentiles: tuple = ()  # ((percent, ms), ...) of this run's latency, for pooling runs


PERCENT_GRID = (50, 75, 90, 95, 97.5, 99, 99.5, 99.9, 100)  # 100: wrk's latency.max


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def parse_wrk(output: str) -> dict:
    def grab(pattern):
        match = re.search(pattern, output, re.M)
        return match.group(1) if match else None

    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        match = re.search(pattern, output)
        if match:
            errors += sum(int(g) for g in match.groups())
    return {
        "requests_per_s": float(grab(r"^Requests/sec:\s+([\d.]+)") or 0.0),
        "requests": int(grab(r"^\s*(\d+) requests in") or 0),
        "p50_ms": _ms(grab(r"^\s+50%\s+(\S+)") or "nan"),
        "p99_ms": _ms(grab(r"^\s+99%\s+(\S+)") or "nan"),
        "errors": errors,
        "percentiles": tuple((float(p), int(us) / 1000.0)
                             for p, us in re.findall(r"^PCT ([\d.]+) (\d+)$", output, re.M)),
    }


LUA_ROTATE = """
local items = {%s}
local method = "%s"
local i = 0
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #items + 1
  if method == "GET" then return wrk.format("GET", items[i]) end
  return wrk.format(method, "%s", nil, items[i])
end
done = function(summary, latency, requests)
  for _, p in ipairs({%s}) do
    io.write(string.format("PCT %%g %%d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("PCT 100 %%d\\n", latency.max))
end
"""


def _lua(method: str, items: list[str], path: str = "/") -> str:
    quoted = ", ".join(json.dumps(item) for item in items)
    return LUA_ROTATE % (quoted, method, path, ", ".join(str(p) for p in PERCENT_GRID[:-1]))


def run_wrk(server: ServerProcess, name: str, url_path: str, args, script: str | None = None) -> Result:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
           f"--timeout={max(2, int(args.duration))}s"]
    script_file = None
    if script:
        script_file = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script_file.write(script)
        script_file.close()
        cmd += ["-s", script_file.name]
    cmd.append(server.url + url_path)
    cpu_before = server.cpu_seconds()
    try:
        output = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 30).stdout
    finally:
        if script_file:
            os.unlink(script_file.name)
    cpu = server.cpu_seconds() - cpu_before
    parsed = parse_wrk(output)
    per_request = cpu / parsed["requests"] * 1e6 if parsed["requests"] else float("nan")
    result = Result(name, parsed["requests_per_s"], parsed["p50_ms"], parsed["p99_ms"], per_request,
                    parsed["requests"], parsed["errors"], parsed["percentiles"])
    print(f"  {name:<32} {result.requests_per_s:>9.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
          f"p99 {result.p99_ms:6.2f} ms  cpu {result.cpu_us_per_request:5.1f} µs/req", file=sys.stderr)
    return result


class Heartbeats:
    """Keeps the benchmark population's leases alive while the load runs."""

    def __init__(self, url: str, node_ids: list[str], interval: float = 5.0):
        self.url, self.node_ids, self.interval = url, node_ids, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while not self.stop.wait(self.interval):
                for node_id in self.node_ids:
                    try:
                        http.post("/heartbeat", json={"nodeId": node_id})
                    except httpx.HTTPError:
                        pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def instance_body(s: int, i: int, ttl: float = 60) -> dict:
    """The registration of instance ``i`` of service ``s`` in the benchmark population:
    metadata that the weighted, cost-aware and geo-aware strategies read."""
    return {"serviceName": f"svc-{s}", "host": "127.0.0.1", "port": 20000 + s * 100 + i, "ttl": ttl,
            "metadata": {"version": "1.0.0", "weight": 1 + i % 3, "cost": i % 4, "zone": f"z{i % 2}",
                         "lat": 40.0 + i, "lon": -3.0 + s}}


def register_population(url: str, services: int, instances: int) -> list[dict]:
    bodies = []
    with httpx.Client(base_url=url, timeout=10) as http:
        for s in range(services):
            for i in range(instances):
                body = instance_body(s, i)
                response = http.post("/register", json=body)
                response.raise_for_status()
                body["nodeId"] = response.json()["nodeId"]
                bodies.append(body)
    return bodies


def available_strategies(url: str) -> list[str]:
    response = httpx.get(url + "/discover", params={"serviceName": "svc-0", "loadBalancing": "?"})
    return response.json().get("validStrategies", [])


def ml_stack_loaded(pid: int) -> bool:
    """Whether the server has loaded statsmodels (and scipy), which the ML hub
    imports on its first forecast (~115 MiB resident), and river, which its
    learners import on the first client report (~2.4 s of CPU): paid once per process."""
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    return "statsmodels" in maps and "_river_rust" in maps


def warm_up(server: ServerProcess, service: str, node_ids: list[str], max_seconds: float = 45.0) -> bool:
    """Drive discovery in bursts, and report on a few of ``node_ids``, until the ML
    hub has made its first forecast and learnt from a report (so its one-off imports
    are part of the empty server, not of the instances or of a measured workload),
    or ``max_seconds`` pass. Returns whether the ML stack is loaded."""
    deadline = time.monotonic() + max_seconds
    with httpx.Client(base_url=server.url, timeout=10) as http:
        while not ml_stack_loaded(server.pid):
            if time.monotonic() > deadline:
                return False
            wrk_discover(server, service, 2)  # bursts and pauses: a load series that varies
            for node_id in node_ids[:3]:
                http.post("/record-response-time", json=write_body("record-response-time", node_id))
            time.sleep(1.0)
    return True


def wrk_discover(server: ServerProcess, service: str, seconds: int) -> dict:
    cpu0 = server.cpu_seconds()
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency",
                          f"{server.url}/discover?serviceName={service}"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    cpu = server.cpu_seconds() - cpu0
    parsed = parse_wrk(out)
    parsed["cpu_us_per_request"] = cpu / parsed["requests"] * 1e6 if parsed["requests"] else float("nan")
    return parsed


def bench(args) -> dict:
    server_args = ["--server", args.server, "--interface", args.interface]
    offered = ["--strategies", args.server_strategies] if args.server_strategies else []
    rsgi = args.server == "granian" and args.interface == "rsgi"
    print(f"reference (raw ASGI{', and RSGI' if rsgi else ''}) and maxine serve {' '.join(server_args)}: "
          f"{args.services} services x {args.instances} instances", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        ref = stack.enter_context(server_process(["maxine.bench.reference", "--server", args.server,
                                                  "--interface", "asgi"]))
        ref_rsgi = stack.enter_context(server_process(["maxine.bench.reference", *server_args])) if rsgi else None
        srv = stack.enter_context(maxine_server(server_args + offered))
        population = register_population(srv.url, args.services, args.instances)
        # the ML hub's first forecast imports statsmodels and scipy (seconds of CPU, once per
        # process): measured inside a strategy's window it cost that strategy up to 40 %
        print("warming up until the ML stack is loaded", file=sys.stderr)
        warm_up(srv, "svc-0", [b["nodeId"] for b in population])
        valid = available_strategies(srv.url)
        wanted = args.strategies.split(",") if args.strategies else DEFAULT_STRATEGIES
        strategies = [s for s in wanted if s in valid]
        skipped = [s for s in wanted if s not in valid]
        references = [(ref, REFERENCE_NAMES, POST_REFERENCE_NAMES)]
        if ref_rsgi is not None:
            references.append((ref_rsgi, RSGI_NAMES, RSGI_POST_NAMES))
        node_ids = [b["nodeId"] for b in population]
        (get_ref, post_ref), *others = [reference_workloads(server, get[0], post[0], args.services, node_ids)
                                        for server, get, post in references]
        discovers = [(f"GET /discover {s}", srv, _lua("GET", discover_paths(s, args.services))) for s in strategies]
        writes = write_workloads(srv, population, args.writes.split(",") if args.writes else WRITES)
        sequence, control_of = round_sequence(get_ref, post_ref, discovers, writes)
        sequence += [w for pair in others for w in pair] + [(PLAIN_REFERENCE, ref, _lua("GET", ["/"]))]
        with Heartbeats(srv.url, [b["nodeId"] for b in population]):
            # in rounds, so that a slow spell of a shared machine falls on every workload alike,
            # each reference included (the reference server idles while maxine is measured)
            rounds: list[list[Result]] = []
            for k in range(args.rounds):
                if args.rounds > 1:
                    print(f"round {k + 1} of {args.rounds}", file=sys.stderr)
                rounds.append([run_wrk(server, name, "/", args, script) for name, server, script in sequence])
            by_name: dict[str, list[Result]] = {}
            for run in (r for runs in rounds for r in runs):
                by_name.setdefault(run.name, []).append(run)
            results = [merge(runs) for runs in by_name.values()]
            paired = paired_ratios(rounds, control_of)
        print("references again (drift check)", file=sys.stderr)
        for name, server, script in [w for server, get, post in references
                                     for w in reference_workloads(server, get[1], post[1], args.services, node_ids)]:
            results.append(run_wrk(server, name, "/", args, script))
    return {"results": results, "paired": paired, "skipped": skipped}


ROUND_ROBIN = "GET /discover round-robin"


def round_sequence(get_ref: tuple, post_ref: tuple, discovers: list[tuple],
                   writes: list[tuple]) -> tuple[list[tuple], dict[str, str]]:
    """One round's workloads in order, each compared workload next to its control, and
    what each is compared with: the GET reference, then round-robin before and after
    every other strategy (round-robin's control is the GET reference, next to its first
    and last run), the GET reference again; then the POST reference around every write."""
    rr = next((w for w in discovers if w[0] == ROUND_ROBIN), None)
    others = [w for w in discovers if w is not rr]
    sequence, control_of = [get_ref], {}
    if rr is None:
        sequence += others
    else:
        sequence.append(rr)
        control_of[ROUND_ROBIN] = get_ref[0]
        for w in others:
            sequence += [w, rr]
            control_of[w[0]] = ROUND_ROBIN
    sequence += [get_ref, post_ref]
    for w in writes:
        sequence += [w, post_ref]
        control_of[w[0]] = post_ref[0]
    return sequence, control_of


def paired_ratios(rounds: list[list[Result]], control_of: dict[str, str]) -> dict[str, list[float]]:
    """Each run's requests/s over its control's, measured right before and after it in
    the same round (their mean when both, which cancels a steady drift): the two share
    the machine's state of the moment, which the runs of a whole round do not. Runs
    with no control next to them count for none."""
    ratios: dict[str, list[float]] = {}
    for runs in rounds:
        for i, run in enumerate(runs):
            control = control_of.get(run.name)
            near = [runs[j].requests_per_s for j in (i - 1, i + 1)
                    if 0 <= j < len(runs) and runs[j].name == control and runs[j].requests_per_s > 0]
            if near:
                ratios.setdefault(run.name, []).append(run.requests_per_s / (sum(near) / len(near)))
    return ratios


def write_body(workload: str, node_id: str) -> dict:
    """The body of this benchmark's ``heartbeat`` or ``record-response-time`` request."""
    if workload == "heartbeat":
        return {"nodeId": node_id, "inFlight": 1, "cpu": 0.3}
    return {"nodeId": node_id, "responseTime": 12.5}


def batch_body(node_ids: list[str], i: int) -> dict:
    """The i-th ``POST /record-response-times`` body: ``BATCH`` reports, rotating over ``node_ids``."""
    return {"reports": [write_body("record-response-time", node_ids[(i * BATCH + k) % len(node_ids)])
                        for k in range(BATCH)]}


def discover_paths(strategy: str, services: int) -> list[str]:
    """The ``/discover`` request lines of one strategy's workload, one per service."""
    return [f"/discover?serviceName=svc-{s}&loadBalancing={strategy}&clientId=c{s}&lat=41&lon=-2"
            for s in range(services)]


def reference_workloads(ref: ServerProcess, get_name: str, post_name: str, services: int,
                        node_ids: list[str]) -> list[tuple]:
    """The GET reference, sent round-robin's ``/discover`` requests, and the POST reference
    (it reads the body), sent the ``/record-response-time`` requests: the same bytes as
    the workloads they are compared with, answered by the raw app."""
    post_bodies = [json.dumps(write_body("record-response-time", n)) for n in node_ids]
    return [(get_name, ref, _lua("GET", discover_paths("round-robin", services))),
            (post_name, ref, _lua("POST", post_bodies, "/record-response-time"))]


def write_workloads(srv: ServerProcess, population: list[dict], writes: list[str]) -> list[tuple]:
    node_ids = [b["nodeId"] for b in population]
    bodies = {
        "heartbeat": ("POST /heartbeat", [json.dumps(write_body("heartbeat", n)) for n in node_ids]),
        "record-response-time": ("POST /record-response-time",
                                 [json.dumps(write_body("record-response-time", n)) for n in node_ids]),
        "record-response-times": (BATCHED, [json.dumps(batch_body(node_ids, i)) for i in range(len(node_ids))]),
        "register": ("POST /register (refresh)",
                     [json.dumps({k: v for k, v in b.items() if k != "nodeId"}) for b in population]),
    }
    return [(bodies[w][0], srv, _lua("POST", bodies[w][1], "/" + w)) for w in WRITES if w in writes]


def merge(runs: list[Result]) -> Result:
    """One workload's runs as one result: mean requests/s and p50, CPU per request over all
    requests, and the p99 of all their requests together (from each run's percentiles;
    the worst run's p99 for runs without them)."""
    if len(runs) == 1:
        return runs[0]
    requests = sum(r.requests for r in runs)
    cpu = sum(r.cpu_us_per_request * r.requests for r in runs if r.requests)
    pooled = all(r.percentiles for r in runs) and requests
    p99 = pooled_percentile(runs, 99.0) if pooled else max(r.p99_ms for r in runs)
    return Result(runs[0].name, sum(r.requests_per_s for r in runs) / len(runs),
                  sum(r.p50_ms for r in runs) / len(runs), p99,
                  cpu / requests if requests else float("nan"), requests, sum(r.errors for r in runs))


def _share_within(grid: tuple, ms: float) -> float:
    """The share of one run's requests answered within ``ms``, linear between its percentiles."""
    below_p, below_v = 0.0, 0.0
    for p, v in grid:
        if ms < v:
            return (below_p + (p - below_p) * (ms - below_v) / (v - below_v)) / 100.0
        below_p, below_v = p, v
    return 1.0


def pooled_percentile(runs: list[Result], percent: float) -> float:
    """The latency under which ``percent`` % of all the runs' requests were answered."""
    total = sum(r.requests for r in runs)
    lo, hi = 0.0, max(r.percentiles[-1][1] for r in runs)
    for _ in range(60):
        mid = (lo + hi) / 2
        if sum(r.requests * _share_within(r.percentiles, mid) for r in runs) >= total * percent / 100.0:
            hi = mid
        else:
            lo = mid
    return hi


def _mean(results: list[Result], names, field: str) -> float | None:
    values = [getattr(r, field) for r in results if r.name in names]
    return sum(values) / len(values) if values else None


def summarise(results: list[Result], paired: dict[str, list[float]] | None = None) -> tuple[list[dict], list[str]]:
    """The table's rows and the verdicts against issue #6's targets. A verdict uses the
    median of the workload's ``paired`` ratios (:func:`paired_ratios`) when there are any,
    else the ratio of whole-run means."""
    paired = paired or {}
    by_name = {r.name: r for r in results}
    ref_rps = _mean(results, REFERENCE_NAMES, "requests_per_s")
    ref_cpu = _mean(results, REFERENCE_NAMES, "cpu_us_per_request")
    post_rps = _mean(results, POST_REFERENCE_NAMES, "requests_per_s")
    post_cpu = _mean(results, POST_REFERENCE_NAMES, "cpu_us_per_request")
    rsgi_rps = _mean(results, RSGI_NAMES, "requests_per_s")
    rsgi_post_rps = _mean(results, RSGI_POST_NAMES, "requests_per_s")
    rr = by_name.get(ROUND_ROBIN)
    rows, verdicts = [], []
    for r in results:
        row = asdict(r)
        del row["percentiles"]
        row["vs_reference"] = r.requests_per_s / ref_rps if ref_rps else None
        row["cpu_vs_reference"] = ref_cpu / r.cpu_us_per_request if ref_cpu and r.cpu_us_per_request else None
        post = r.name.startswith("POST /")
        row["vs_post_reference"] = r.requests_per_s / post_rps if post_rps and post else None
        row["cpu_vs_post_reference"] = post_cpu / r.cpu_us_per_request if post_cpu and post and r.cpu_us_per_request else None
        row["vs_round_robin"] = r.requests_per_s / rr.requests_per_s if rr and r.name.startswith("GET /discover") else None
        row["paired"] = statistics.median(paired[r.name]) if r.name in paired else None
        row["paired_runs"] = len(paired.get(r.name, ()))
        rows.append(row)
    ratio_of = {row["name"]: row for row in rows}

    def judged(name: str, merged: float) -> tuple[float, str]:
        """The ratio a verdict uses, and how it was measured."""
        row = ratio_of[name]
        if row["paired"] is None:
            return merged, "of whole-run means"
        return row["paired"], f"median of {row['paired_runs']} back-to-back pairs; {merged:.2f}x of whole-run means"

    if rr and ref_rps:
        ratio, how = judged(rr.name, rr.requests_per_s / ref_rps)
        ok = ratio >= TARGETS["discover_vs_reference"]
        verdicts.append(f"{'PASS' if ok else 'MISS'} /discover round-robin {ratio:.2f}x reference "
                        f"(target >= {TARGETS['discover_vs_reference']}; {how}); "
                        f"CPU/request {ref_cpu / rr.cpu_us_per_request:.2f}x")
        plain = by_name.get(PLAIN_REFERENCE)
        if plain:
            verdicts.append(f"     round-robin {rr.requests_per_s / plain.requests_per_s:.2f}x the reference driven by "
                            f"plain GET / (earlier runs' load; it is {plain.requests_per_s / ref_rps:.2f}x the reference "
                            f"sent /discover's requests)")
        if rsgi_rps:
            verdicts.append(f"     round-robin {rr.requests_per_s / rsgi_rps:.2f}x the raw RSGI reference "
                            f"(maxine's own interface; that reference is {rsgi_rps / ref_rps:.2f}x the ASGI one)")
        ok = rr.p99_ms <= TARGETS["discover_p99_ms"]
        ref = by_name.get(REFERENCE_NAMES[0])
        beside = f"; the GET reference's {ref.p99_ms:.2f} ms" if ref else ""
        verdicts.append(f"{'PASS' if ok else 'MISS'} /discover round-robin p99 {rr.p99_ms:.2f} ms "
                        f"(target <= 10 ms; of all its requests{beside})")
        ratios = {r.name: judged(r.name, r.requests_per_s / rr.requests_per_s)[0]
                  for r in results if r.name.startswith("GET /discover") and r is not rr}
        for name, ratio in ratios.items():
            if ratio < TARGETS["strategy_vs_round_robin"]:
                verdicts.append(f"MISS {name} {ratio:.2f}x round-robin (target >= 0.85)")
        met = sum(ratio >= TARGETS["strategy_vs_round_robin"] for ratio in ratios.values())
        if ratios:
            worst = min(ratios, key=ratios.get)
            verdicts.append(f"{'PASS' if met == len(ratios) else '    '} {met} of {len(ratios)} strategies "
                            f">= 0.85x round-robin; slowest: {worst[14:]} at "
                            f"{ratios[worst]:.2f}x")
    for name in ("POST /heartbeat", "POST /record-response-time"):
        r = by_name.get(name)
        if r and post_rps:
            ratio, how = judged(name, r.requests_per_s / post_rps)
            ok = ratio >= TARGETS["write_vs_post_reference"]
            also = f"; {r.requests_per_s / ref_rps:.2f}x GET reference" if ref_rps else ""
            if post_cpu and r.cpu_us_per_request:  # steadier than requests/s on a shared machine
                also += f"; CPU/request {post_cpu / r.cpu_us_per_request:.2f}x POST reference"
            if rsgi_post_rps:
                also += f"; {r.requests_per_s / rsgi_post_rps:.2f}x RSGI POST reference"
            verdicts.append(f"{'PASS' if ok else 'MISS'} {name} {ratio:.2f}x POST reference "
                            f"(target >= {TARGETS['write_vs_post_reference']}; {how}){also}")
    for r in results:
        if r.errors:
            verdicts.append(f"ERROR {r.name}: {r.errors} of {r.requests} requests failed (non-2xx or socket errors); "
                            "its figures are not of the workload")
    batched = by_name.get(BATCHED)
    if batched and post_rps:
        per_report = batched.requests_per_s * BATCH / post_rps
        verdicts.append(f"     {BATCHED}: {batched.requests_per_s * BATCH:.0f} reports/s, {per_report:.2f}x the POST "
                        f"reference's requests/s (CPU/report {batched.cpu_us_per_request / BATCH:.1f} µs)")
    return rows, verdicts


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def print_table(rows: list[dict]) -> None:
    print("\n| workload | req/s | p50 ms | p99 ms | CPU µs/req | × reference | × POST reference | × round-robin "
          "| × control, paired |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['name']} | {row['requests_per_s']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
              f"{row['cpu_us_per_request']:.1f} | {_ratio(row['vs_reference'])} | {_ratio(row['vs_post_reference'])} | "
              f"{_ratio(row['vs_round_robin'])} | {_ratio(row['paired'])} |")


def bench_http_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="maxine bench http", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="whole seconds per workload (default 5)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every workload (references included) this many times, interleaved, "
                             "and merge; each round gives one paired ratio per compared workload (default 1)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: the other core serves)")
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--strategies", help="comma-separated (default: every built-in that the server offers)")
    parser.add_argument("--server-strategies",
                        help="the strategies maxine offers (maxine serve --strategies; default: every built-in); "
                             "a client report feeds only those that learn")
    parser.add_argument("--writes", help=f"comma-separated POST workloads of {','.join(WRITES)} (default: all)")
    parser.add_argument("--server", choices=("granian", "uvicorn"), default="granian")
    parser.add_argument("--interface", choices=("rsgi", "asgi"), default="rsgi",
                        help="how granian calls maxine (default rsgi, as maxine serve); the references are raw ASGI "
                             "either way, plus raw RSGI with rsgi")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1:
        print("error: --rounds and --duration must be at least 1", file=sys.stderr)
        return 2
    unknown = set(args.writes.split(",")) - set(WRITES) if args.writes else set()
    if unknown:
        print(f"error: unknown --writes {','.join(sorted(unknown))} (choose from {','.join(WRITES)})", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install wrk` (Debian package) and run again", file=sys.stderr)
        return 2
    outcome = bench(args)
    rows, verdicts = summarise(outcome["results"], outcome["paired"])
    print_table(rows)
    print()
    for line in verdicts:
        print(line)
    if outcome["skipped"]:
        print(f"not offered by this server (skipped): {', '.join(outcome['skipped'])}")
    if args.json:
        meta = {"command": "maxine bench http " + " ".join(argv), "machine": machine()}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows, "verdicts": verdicts}, f, indent=2)
    return 1 if any(line.startswith("ERROR") for line in verdicts) else 0


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}
