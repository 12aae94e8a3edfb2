"""A discrete-event simulator that drives the production balancer objects.

One run = one scenario × one strategy × one seed. The simulator builds real
:class:`maxine.registry.Instance` objects and a :class:`maxine.registry.Pool`,
builds the strategy with :class:`maxine.balancers.Balancers` exactly as the
server does, and feeds it through the same verbs the server uses:

- a discovery: ``strategy.pick(pool, ctx)`` then ``node.state.on_dispatch(now)``;
- a client report: ``node.state.on_result(...)`` then ``balancers.learn_one(...)``;
- a heartbeat: ``node.state.on_load_report(now, in_flight=, cpu=, qps=, error_rate=, latency_ms=)``.

Times inside the simulator are seconds (the NodeState clock), latencies ms.
The workload (arrival times, work sizes, network delays, failure draws, which
client sends each request) is drawn up front from the seed, so every strategy
sees the same requests for the same seed (common random numbers), and a run
is fully deterministic per (scenario, strategy, seed) apart from the measured
decision cost.

Servers are FCFS queues with ``workers`` parallel workers; a request's service
time is its work divided by the server's current speed. A request fails fast
(answered after ``fail_ms`` without using a worker) with probability
``fail_rate`` while a failure event covers its server. The client gives up at
``timeout_ms`` (counted as an error with latency = timeout); the server still
serves it, as real servers do.

Information models:
- ``registry``: heartbeats every ``heartbeat_ms`` carry the instance's true
  in-flight count, utilisation, qps, error rate and p50 service time over the
  interval; client reports reach the registry ``report_delay_ms`` after the
  client saw the answer, and a fraction ``report_loss`` (default 0) never
  does (in every model).
- ``fresh``: the same, with immediate reports and heartbeats every 50 ms
  (the registry's dispatch compensation then makes in-flight exact but for
  requests on the wire).
- ``multi``: ``clients`` independent registries (each its own strategy object
  and NodeStates) all receive every heartbeat, but each sees only its own
  dispatches and its own clients' reports.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import time
from collections import deque

import numpy as np

from ..balancers import Balancers, PickContext
from ..balancers.adaptive import lab_only_factories
from ..balancers.pickers import FullScan
from ..registry import Instance, Pool

SERVICE = "sim"
ORACLE = "oracle"

# event kinds
_ARRIVE, _DONE, _FAILED, _REPORT, _HEARTBEAT, _SPEED, _FAIL, _ROTATE, _BACKGROUND = range(9)
BACKGROUND_S = 0.05  # the server's refresh_learned job interval


class OracleEstimate:
    """Shortest expected delay with the simulator's true state: (pending + 1) /
    (workers × current speed), where pending counts requests dispatched to the
    server and not finished there; a fast-failing server is avoided."""

    def __init__(self, sim: "Simulation"):
        self.sim = sim

    def load(self, node, ctx) -> float:
        sim = self.sim
        i = node.metadata["sim_index"]
        cost = (sim.pending[i] + 1.0) / (sim.workers[i] * sim.speed[i])
        if sim.fail_rate[i] > 0.0:
            cost += 1e6 * sim.fail_rate[i]
        return cost


def info_timing(info: dict) -> tuple[float, float]:
    """(heartbeat interval, client report delay) in seconds, of a scenario's information model."""
    if info["model"] == "fresh":
        return min(float(info.get("heartbeat_ms", 50.0)), 50.0) / 1000.0, 0.0
    return float(info.get("heartbeat_ms", 1000.0)) / 1000.0, float(info.get("report_delay_ms", 0.0)) / 1000.0


def reports_lost(info: dict, seed: int, n: int) -> list[bool] | None:
    """Which of ``n`` requests' client reports never reach the registry (callers
    that crash, time out or skip reporting): a fraction ``info.report_loss``,
    drawn from a stream of its own, so a scenario without loss is unchanged."""
    loss = float(info.get("report_loss", 0.0))
    if loss <= 0.0:
        return None
    return (np.random.default_rng([seed, 0x1055]).random(n) < loss).tolist()


def _service_work_ms(rng: np.random.Generator, st: dict, n: int) -> np.ndarray:
    mean = float(st["mean_ms"])
    dist = st["dist"]
    if dist == "exponential":
        return rng.exponential(mean, n)
    if dist == "constant":
        return np.full(n, mean)
    if dist == "lognormal":
        sigma = float(st.get("sigma", 1.0))
        mu = math.log(mean) - sigma * sigma / 2.0
        return rng.lognormal(mu, sigma, n)
    if dist == "pareto":
        alpha = float(st.get("alpha", 2.5))
        xm = mean * (alpha - 1.0) / alpha
        return xm * (1.0 + rng.pareto(alpha, n))
    raise ValueError(dist)


def _arrival_times(rng: np.random.Generator, arr: dict, rate: float, n: int) -> np.ndarray:
    """Arrival times in seconds for ``n`` requests at long-run rate ``rate``/s."""
    if arr["kind"] == "poisson":
        return np.cumsum(rng.exponential(1.0 / rate, n))
    # two-state MMPP; high/low are relative rates, normalised to average 1
    high, low = float(arr["high"]), float(arr["low"])
    avg = (high + low) / 2.0
    rates = (rate * high / avg, rate * low / avg)
    sojourn = float(arr["mean_sojourn_ms"]) / 1000.0
    out, t, state, total = [], 0.0, 0, 0
    while total < n:
        d = rng.exponential(sojourn)
        k = int(rng.poisson(rates[state] * d))
        if k:
            out.append(t + np.sort(rng.uniform(0.0, d, k)))
            total += k
        t += d
        state ^= 1
    return np.concatenate(out)[:n]


class _View:
    """What one registry knows: its own Instances, Pool, strategy objects."""

    __slots__ = ("balancers", "strategy", "nodes", "pool", "ctx", "observers")

    def __init__(self, sim: "Simulation", strategy_name: str, seed: int, extra_factories: dict, wrap=None):
        self.nodes = tuple(
            Instance(SERVICE, "10.0.0.1", 10000 + i, {"sim_index": i}, ttl=1e12, now=0.0, dispatch_ttl=1e9)
            for i in range(sim.n)
        )
        self.pool = Pool(SERVICE, self.nodes)
        if strategy_name in extra_factories:
            self.balancers = Balancers([])
            strategy = extra_factories[strategy_name]()
            self.balancers.strategies[strategy_name] = strategy
            self.balancers.observers = [strategy]
        else:
            self.balancers = Balancers([strategy_name])
        if wrap is not None:  # e.g. the telemetry recorder around the real strategy
            strategy = self.balancers.strategies[strategy_name] = wrap(self.balancers.strategies[strategy_name])
            self.balancers.observers = [strategy]
        self.strategy = self.balancers.get(strategy_name)
        self.observers = bool(self.balancers.observers)
        self.ctx = PickContext(now=0.0, rng=random.Random(seed), client_key=None)


class Simulation:
    def __init__(self, scenario: dict, strategy: str, seed: int, timeline_bins: int = 40, wrap=None):
        """``wrap(strategy) -> strategy``, if given, wraps each registry's strategy object."""
        self.sc = scenario
        self.wrap = wrap
        self.strategy_name = strategy
        self.seed = seed
        self.timeline_bins = timeline_bins
        speeds, workers = [], []
        for group in scenario["servers"]:
            for _ in range(int(group.get("count", 1))):
                speeds.append(float(group.get("speed", 1.0)))
                workers.append(int(group.get("workers", 1)))
        self.n = len(speeds)
        self.nominal_speed = speeds
        self.speed = list(speeds)
        self.workers = workers
        self.fail_rate = [0.0] * self.n
        self.fail_ms = [1.0] * self.n
        self.pending = [0] * self.n

    # ------------------------------------------------------------------
    def run(self) -> dict:
        sc = self.sc
        n_req = int(sc["requests"])
        ss = np.random.SeedSequence(self.seed)
        workload_ss, events_ss, strategy_ss = ss.spawn(3)
        rng = np.random.default_rng(workload_ss)
        ev_rng = np.random.default_rng(events_ss)
        strategy_seed = int(strategy_ss.generate_state(1)[0])

        st = sc["service_time"]
        mean_s = float(st["mean_ms"]) / 1000.0
        capacity = sum(w * s for w, s in zip(self.workers, self.nominal_speed)) / mean_s
        rate = float(sc["arrivals"]["utilization"]) * capacity
        arrivals = _arrival_times(rng, sc["arrivals"], rate, n_req).tolist()
        work_s = (_service_work_ms(rng, st, n_req) / 1000.0).tolist()
        net = sc["network_ms"]
        base, jitter = float(net.get("base", 0.0)) / 1000.0, float(net.get("jitter", 0.0)) / 1000.0
        net1 = (base / 2.0 + jitter / 2.0 * rng.random(n_req)).tolist()
        net2 = (base / 2.0 + jitter / 2.0 * rng.random(n_req)).tolist()
        fail_u = rng.random(n_req).tolist()
        info = sc["info"]
        model = info["model"]
        clients = int(info.get("clients", 1))
        client_of = rng.integers(0, clients, n_req).tolist() if clients > 1 else None
        timeout = float(sc["timeout_ms"]) / 1000.0
        heartbeat, report_delay = info_timing(info)
        lost = reports_lost(info, self.seed, n_req)
        horizon = arrivals[-1]

        # --- views (one registry, or K independent ones) ---------------------
        extra = dict(lab_only_factories())
        extra[ORACLE] = lambda: FullScan(OracleEstimate(self), ORACLE)
        k_views = clients if model == "multi" else 1
        views = [_View(self, self.strategy_name, strategy_seed + v, extra, self.wrap) for v in range(k_views)]
        if model == "multi":
            for v in views:  # each dispatcher sees 1/K of the traffic (C3's n_clients)
                v.ctx.params = {"clients": clients}
        multi = model == "multi"

        # --- server state ------------------------------------------------------
        n = self.n
        speed, workers, fail_rate, fail_ms, pending = self.speed, self.workers, self.fail_rate, self.fail_ms, self.pending
        busy = [0] * n
        in_sys = [0] * n
        queues = [deque() for _ in range(n)]
        busy_area = [0.0] * n
        rif_area = [0.0] * n
        last_change = [0.0] * n
        hb_busy_area = [0.0] * n
        hb_done = [0] * n
        hb_failed = [0] * n
        hb_svc: list[list[float]] = [[] for _ in range(n)]
        hb_last = [0.0] * n
        serving: list[dict] = [{} for _ in range(n)]  # request -> service start, per server
        smooth = [None] * n  # smoothed (cpu, qps, error rate) per server
        window = max(float(info.get("metrics_window_ms", 1000.0)) / 1000.0, 1e-9)
        dispatched_to = [0] * n

        srv = [0] * n_req
        svc_dur = [0.0] * n_req
        done = bytearray(n_req)
        latency_ms = [0.0] * n_req
        ok = bytearray(n_req)

        heap: list = []
        seq = 0
        push = heapq.heappush
        pop = heapq.heappop

        # heartbeats: staggered phases so instances do not report in lockstep
        phases = ev_rng.random(n) * heartbeat
        for i in range(n):
            push(heap, (float(phases[i]), seq, _HEARTBEAT, i, 0.0, 0))
            seq += 1
        # the server's background re-scoring job (refresh_learned), for the strategies that have one
        background = [v.strategy for v in views if hasattr(v.strategy, "refresh_pending")]
        if background:
            push(heap, (BACKGROUND_S, seq, _BACKGROUND, 0, 0.0, 0))
            seq += 1
        # scheduled speed / failure windows
        for ev in sc["events"]:
            if "every_ms" in ev:
                push(heap, (float(ev["every_ms"]) / 1000.0, seq, _ROTATE, 0, 0.0, sc["events"].index(ev)))
                seq += 1
                continue
            t0, t1 = float(ev.get("start", 0.0)) * horizon, float(ev.get("end", 1.0)) * horizon
            for i in ev["servers"]:
                i = int(i)
                if "speed" in ev:
                    push(heap, (t0, seq, _SPEED, i, float(ev["speed"]), 0)); seq += 1
                    push(heap, (t1, seq, _SPEED, i, -1.0, 0)); seq += 1
                if "fail_rate" in ev:
                    fms = float(ev.get("fail_ms", 1.0))
                    push(heap, (t0, seq, _FAIL, i, float(ev["fail_rate"]), int(fms * 1000))); seq += 1
                    push(heap, (t1, seq, _FAIL, i, 0.0, 0)); seq += 1
        rotating: dict[int, list[int]] = {}

        def touch(i, now):
            dt = now - last_change[i]
            if dt > 0.0:
                busy_area[i] += busy[i] * dt
                rif_area[i] += in_sys[i] * dt
                last_change[i] = now

        def begin(i, r, now):
            """Start serving request r on server i; returns when it completes."""
            d = work_s[r] / speed[i]
            svc_dur[r] = d
            serving[i][r] = now
            return now + d

        perf = time.perf_counter
        decision_s = 0.0
        warm_index = int(float(sc["warmup_fraction"]) * n_req)
        warm_time = arrivals[warm_index] if warm_index < n_req else horizon
        warm_rif = None
        finished = 0
        ai = 0  # next arrival
        ti = 0  # next timeout candidate (deadlines are in arrival order)
        view0 = views[0]
        inf = math.inf

        while finished < n_req:
            t_arr = arrivals[ai] if ai < n_req else inf
            t_to = arrivals[ti] + timeout if ti < ai else inf
            t_heap = heap[0][0] if heap else inf
            if t_arr <= t_heap and t_arr <= t_to:
                # ---- a discovery + dispatch -------------------------------
                now = t_arr
                r = ai
                ai += 1
                if r == warm_index:
                    for i in range(n):
                        touch(i, now)
                    warm_rif = list(rif_area)
                view = views[client_of[r]] if multi else view0
                ctx = view.ctx
                ctx.now = now
                t0 = perf()
                node = view.strategy.pick(view.pool, ctx)
                decision_s += perf() - t0
                node.state.on_dispatch(now)
                i = node.metadata["sim_index"]
                srv[r] = i
                pending[i] += 1
                dispatched_to[i] += 1
                push(heap, (now + net1[r], seq, _ARRIVE, r, 0.0, 0))
                seq += 1
                continue
            if t_to <= t_heap:
                # ---- a client deadline ------------------------------------
                r = ti
                ti += 1
                if done[r]:
                    continue
                now = t_to
                done[r] = 1
                finished += 1
                latency_ms[r] = timeout * 1000.0
                if lost is None or not lost[r]:
                    push(heap, (now + report_delay, seq, _REPORT, r, timeout * 1000.0, 0))
                seq += 1
                continue
            now, _, kind, a, x, y = pop(heap)
            if kind == _ARRIVE:
                r = a
                i = srv[r]
                if fail_rate[i] > 0.0 and fail_u[r] < fail_rate[i]:
                    push(heap, (now + fail_ms[i], seq, _FAILED, r, 0.0, 0))
                    seq += 1
                    continue
                touch(i, now)
                in_sys[i] += 1
                if busy[i] < workers[i]:
                    busy[i] += 1
                    push(heap, (begin(i, r, now), seq, _DONE, r, 0.0, 0))
                    seq += 1
                else:
                    queues[i].append(r)
            elif kind == _DONE or kind == _FAILED:
                r = a
                i = srv[r]
                pending[i] -= 1
                hb_done[i] += 1
                success = kind == _DONE
                if success:
                    touch(i, now)
                    in_sys[i] -= 1
                    hb_svc[i].append(svc_dur[r])
                    del serving[i][r]
                    q = queues[i]
                    if q:
                        nxt = q.popleft()
                        push(heap, (begin(i, nxt, now), seq, _DONE, nxt, 0.0, 0))
                        seq += 1
                    else:
                        busy[i] -= 1
                else:
                    hb_failed[i] += 1
                    hb_svc[i].append(fail_ms[i])
                if done[r]:
                    continue
                t_client = now + net2[r]
                if t_client - arrivals[r] > timeout:
                    continue  # the deadline fires first
                done[r] = 1
                finished += 1
                lat = (t_client - arrivals[r]) * 1000.0
                latency_ms[r] = lat
                ok[r] = success
                if lost is None or not lost[r]:
                    push(heap, (t_client + report_delay, seq, _REPORT, r, lat, 1 if success else 0))
                seq += 1
            elif kind == _REPORT:
                r = a
                view = views[client_of[r]] if multi else view0
                node = view.nodes[srv[r]]
                success = bool(y)
                node.state.on_result(x, success, now)
                if view.observers:
                    view.balancers.learn_one(node, x, success, now)
            elif kind == _HEARTBEAT:
                i = a
                touch(i, now)
                span = now - hb_last[i]
                if span > 0.0:
                    cpu = min(1.0, (busy_area[i] - hb_busy_area[i]) / (workers[i] * span))
                    qps = hb_done[i] / span
                else:
                    cpu, qps = 0.0, 0.0
                err = hb_failed[i] / hb_done[i] if hb_done[i] else 0.0
                # utilisation, qps and error rate over a window of at least
                # metrics_window_ms (servers do not report 50 ms samples)
                prev = smooth[i]
                if prev is not None and span < window:
                    w = span / window
                    cpu = prev[0] + w * (cpu - prev[0])
                    qps = prev[1] + w * (qps - prev[1])
                    err = prev[2] + w * (err - prev[2])
                smooth[i] = (cpu, qps, err)
                # p50 service time of the interval; a request still in service
                # for longer is a lower bound the instance knows about
                svc = hb_svc[i]
                oldest = (now - min(serving[i].values())) if serving[i] else 0.0
                if svc:
                    svc.sort()
                    p50 = max(svc[len(svc) // 2], oldest) * 1000.0
                else:
                    p50 = oldest * 1000.0 if oldest > 0.0 else None
                rif = in_sys[i]
                for view in views:
                    view.nodes[i].state.on_load_report(now, in_flight=rif, cpu=cpu, qps=qps,
                                                       error_rate=err, latency_ms=p50)
                hb_busy_area[i] = busy_area[i]
                hb_done[i] = 0
                hb_failed[i] = 0
                hb_svc[i] = []
                hb_last[i] = now
                push(heap, (now + heartbeat, seq, _HEARTBEAT, i, 0.0, 0))
                seq += 1
            elif kind == _BACKGROUND:
                for strategy in background:
                    strategy.refresh_pending(now, 1 << 30)
                if now < horizon:
                    push(heap, (now + BACKGROUND_S, seq, _BACKGROUND, 0, 0.0, 0))
                    seq += 1
            elif kind == _SPEED:
                speed[a] = x if x > 0 else self.nominal_speed[a]
            elif kind == _FAIL:
                fail_rate[a] = x
                if x > 0:
                    fail_ms[a] = y / 1e6
            elif kind == _ROTATE:
                ev = sc["events"][y]
                for i in rotating.get(y, []):
                    speed[i] = self.nominal_speed[i]
                count = int(ev.get("count", 1))
                lo, hi = ev.get("speed_range", [0.1, 1.0])
                chosen = ev_rng.choice(n, size=count, replace=False).tolist()
                for i in chosen:
                    speed[i] = self.nominal_speed[i] * float(ev_rng.uniform(float(lo), float(hi)))
                rotating[y] = chosen
                if now < horizon:
                    push(heap, (now + float(ev["every_ms"]) / 1000.0, seq, _ROTATE, 0, 0.0, y))
                    seq += 1

        end = now
        for i in range(n):
            touch(i, end)
        return self._summarise(arrivals, latency_ms, ok, warm_index, warm_time, warm_rif, rif_area,
                               end, decision_s, dispatched_to, n_req)

    # ------------------------------------------------------------------
    def _summarise(self, arrivals, latency_ms, ok, warm_index, warm_time, warm_rif, rif_area, end,
                   decision_s, dispatched_to, n_req) -> dict:
        lat = np.asarray(latency_ms[warm_index:])
        good = np.frombuffer(bytes(ok[warm_index:]), dtype=np.uint8).astype(bool)
        measured = len(lat)
        p50, p99, p999 = np.percentile(lat, [50, 99, 99.9]).tolist()
        span = max(arrivals[-1] - warm_time, 1e-9)
        if warm_rif is None:
            warm_rif = [0.0] * self.n
        avg_rif = [(a - b) / max(end - warm_time, 1e-9) for a, b in zip(rif_area, warm_rif)]
        mean_rif = sum(avg_rif) / len(avg_rif)
        imbalance = max(avg_rif) / mean_rif if mean_rif > 0 else 1.0
        # p99 over time (by arrival time), for plots
        bins = self.timeline_bins
        times = np.asarray(arrivals[warm_index:])
        edges = np.linspace(times[0], times[-1], bins + 1)
        idx = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, bins - 1)
        timeline = []
        for b in range(bins):
            sel = lat[idx == b]
            timeline.append(float(np.percentile(sel, 99)) if len(sel) else None)
        total = sum(dispatched_to)
        return {
            "scenario": self.sc["name"],
            "strategy": self.strategy_name,
            "seed": self.seed,
            "requests": measured,
            "p50_ms": p50,
            "p99_ms": p99,
            "p999_ms": p999,
            "mean_ms": float(lat.mean()),
            "error_rate": float(1.0 - good.mean()) if measured else 0.0,
            "goodput": float(good.sum()) / span,
            "imbalance": imbalance,
            "decision_us": decision_s / n_req * 1e6,
            "share": [d / total for d in dispatched_to],
            "timeline_p99_ms": timeline,
            "timeline_t_s": ((edges[:-1] + edges[1:]) / 2.0).tolist(),
            "digest": hashlib.blake2b(np.asarray(latency_ms).tobytes() + bytes(ok), digest_size=8).hexdigest(),
        }


def simulate(scenario: dict, strategy: str, seed: int) -> dict:
    """One run: the summary metrics of ``strategy`` on ``scenario`` with ``seed``."""
    return Simulation(scenario, strategy, seed).run()


def strategy_names(include_oracle: bool = True) -> list[str]:
    """Every strategy the lab can run: the registered ones, the lab-only
    ablations and the oracle."""
    from ..balancers import factories

    names = sorted(factories())
    names += sorted(lab_only_factories())
    if include_oracle:
        names.append(ORACLE)
    return names

