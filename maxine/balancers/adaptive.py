"""The strong classical strategies, built from the same picker × estimate parts.

- ``c3`` — C3 (Suresh et al., NSDI'15): full scan over
  Ψ = R̄ − S̄ + q̂³·S̄, with R̄ the EWMA of client-observed response times,
  S̄ the instance's reported service time, q̂ = 1 + outstanding·clients + queue.
- ``prequal`` — Prequal (Wydrowski et al., NSDI'24): hot-cold lexicographic rule
  over requests-in-flight (RIF) and latency, fed by heartbeat load reports
  (corrected by this registry's dispatches) instead of probes.
- ``orca-wrr`` — gRPC weighted round robin with ORCA-style load reports (gRFC A58):
  weight = qps / (utilisation + errorRate × penalty), blackout period, expiry,
  earliest-deadline-first scheduling.
- ``p2c-peak-ewma`` — power of two choices over Finagle/Linkerd's Peak-EWMA cost.
- ``least-request`` — Envoy's least_request: power of two choices over
  (active + 1)^bias / weight (plain P2C on active requests when weights are equal).

Every estimate reads only what :class:`maxine.telemetry.NodeState` holds (or
its ``extra`` dict) and costs O(1) per node.
"""

from __future__ import annotations

import heapq
import math

from .estimates import PeakEwma
from .pickers import FullScan, PowerOfTwo, first_lowest, scan_book

# --- C3 ---------------------------------------------------------------------------


class C3Cost:
    """C3's replica score.

    R̄ (response time) is an EWMA of client reports kept in ``state.extra``
    (fed by :meth:`observe`); S̄ (service time, 1/μ̄) is the instance's own
    heartbeat latency report; the queue estimate is the heartbeat's in-flight
    count, and ``outstanding`` this registry's unreported dispatches. A failed
    call counts as a slow one (NodeState's failure penalty) so fast failures do
    not attract traffic, and the score is multiplied by (1 + 20 × the client
    error EWMA) for the same reason. ``clients`` is the number of independent dispatchers
    sharing the instances (``ctx.params["clients"]`` overrides it).
    """

    KEY = "c3.r"

    def __init__(self, alpha: float = 0.1, exponent: float = 3.0, clients: int = 1,
                 default_ms: float = 10.0, error_penalty: float = 20.0):
        self.error_penalty = error_penalty
        self.alpha = alpha  # weight of a new sample (C3's α = 0.9 is the weight of the old value)
        self.exponent = exponent
        self.clients = clients
        self.default_ms = default_ms

    def observe(self, node, latency_ms: float, success: bool, now: float) -> None:
        extra = node.state.extra
        if not success:
            latency_ms = max(latency_ms, node.state.ewma_ms or latency_ms)
        r = extra.get(self.KEY)
        extra[self.KEY] = latency_ms if r is None else r + self.alpha * (latency_ms - r)

    def load(self, node, ctx) -> float:
        return self.cost(self.scores(node, ctx), node.state.outstanding.count(ctx.now))

    def scores(self, node, ctx) -> tuple:
        """What no dispatch moves: R̄, S̄, the queue, the clients and the error factor."""
        state = node.state
        r = state.extra.get(self.KEY)
        s = state.reported_latency_ms
        if s is None or s <= 0.0:
            s = r if r is not None else self.default_ms
        if r is None:
            r = s
        queue = state.reported_in_flight or 0.0
        clients = ctx.params.get("clients", self.clients) if ctx.params else self.clients
        return r, s, queue, clients, 1.0 + self.error_penalty * state.error_ewma

    def cost(self, scores, outstanding):
        r, s, queue, clients, errors = scores
        q = 1.0 + outstanding * clients + queue
        return (r - s + (q ** self.exponent) * s) * errors

    def rank(self, node, ctx, t_ref):
        state = node.state
        return self.scores(node, ctx), state.outstanding.count(ctx.now), False, state.steady_until(ctx.now)


class C3(FullScan):
    """Full scan over :class:`C3Cost`; learns R̄ from client reports."""

    def __init__(self, name: str = "c3", **kwargs):
        super().__init__(C3Cost(**kwargs), name)

    def learn_one(self, node, latency_ms: float, success: bool, now: float) -> None:
        self.estimate.observe(node, latency_ms, success, now)


# --- Prequal -----------------------------------------------------------------------


class HotCold:
    """Prequal's selection rule as a picker over two estimates.

    Prequal chooses among a small pool of recently probed replicas; here the
    registry already has every instance's load report, so ``d`` candidates are
    sampled at random per pick (the probes) and the rule is applied to them.
    A candidate is *hot* when its RIF is above the ``quantile`` of all the
    pool's RIFs; among cold candidates the lowest latency wins, and when all
    are hot the lowest RIF wins. ``d=None`` scans the whole pool (it herds:
    every caller sends to the same lowest-latency cold replica), reading the
    latencies from the pool's :class:`ScanBook` of the latency estimate, whose
    counts are the RIFs it reads (``rif`` must be the same estimate). A pick
    takes the lowest latency, ties at random; only when that candidate is not
    at the lowest RIF does it compute the quantile (O(n log n)), and only when
    it is hot does it apply the rule to every candidate."""

    def __init__(self, rif, latency, quantile: float = 0.84, name: str = "prequal", d: int | None = None):
        self.rif = rif
        self.latency = latency
        self.quantile = quantile
        self.name = name
        self.d = d
        self._key = f"hot-cold:{id(self)}"

    def pick(self, pool, ctx):
        nodes = pool.nodes
        n = len(nodes)
        if n == 1:
            return nodes[0]
        if self.d is not None and self.d < n:
            return self.scan(pool, ctx)
        # the whole pool: the book's counts are the RIFs, its keys the latencies
        book = scan_book(pool, self._key, self.latency, ctx)
        return nodes[self._choose(book.q, book.comparable(ctx.now), ctx.rng.random)]

    def scan(self, pool, ctx):
        """The exact rule, every estimate evaluated now (and, with ``d``, on ``d`` sampled candidates)."""
        nodes = pool.nodes
        n = len(nodes)
        rif = self.rif.load
        rifs = [rif(node, ctx) for node in nodes]
        rand = ctx.rng.random
        latency = self.latency.latency
        if self.d is None or self.d >= n:
            return nodes[self._choose(rifs, [latency(node, ctx) for node in nodes], rand)]
        candidates = set()
        while len(candidates) < self.d:
            candidates.add(int(rand() * n))
        candidates = sorted(candidates)
        latencies = [latency(nodes[k], ctx) for k in candidates]
        return nodes[candidates[self._choose(rifs, latencies, rand, candidates)]]

    def _choose(self, rifs, latencies, rand, candidates=None) -> int:
        """The rule over ``candidates`` (indices into ``rifs``, the whole pool's RIFs;
        all by default) with their ``latencies``: the position of the chosen one."""
        # usually the lowest latency is cold (the lowest RIF always is), and it is the choice
        j = first_lowest(latencies, rand)
        r = rifs[j if candidates is None else candidates[j]]
        if r <= min(rifs):
            return j
        n = len(rifs)
        threshold = sorted(rifs)[min(n - 1, int(self.quantile * (n - 1) + 0.5))]
        if r <= threshold:
            return j
        if candidates is not None:
            rifs = [rifs[k] for k in candidates]
        keys = [(r > threshold, r if r > threshold else latency) for r, latency in zip(rifs, latencies)]
        return first_lowest(keys, rand)


class InFlightEstimate:
    def load(self, node, ctx) -> float:
        return node.state.in_flight(ctx.now)


class LatencyAtLoad(PeakEwma):
    """Prequal's latency signal without probes: the latency a new request can
    expect at the replica's current load, service time × (RIF + 1).

    The service time is the instance's heartbeat p50 (before any heartbeat,
    the client-observed Peak-EWMA, else the service's typical latency). A
    replica whose calls fail is costed (1 + 20 × error rate) higher (client
    reports' error EWMA), so fast failures do not make it look fast."""

    def __init__(self, rif, default_ms: float = 10.0, error_penalty: float = 20.0):
        super().__init__(default_ms)
        self.rif = rif
        self.error_penalty = error_penalty

    def latency(self, node, ctx) -> float:
        state = node.state
        s = state.reported_latency_ms
        if s is None or s <= 0.0:
            s = super().latency(node, ctx)
        return self.cost((s, 1.0 + self.error_penalty * state.error_ewma), self.rif.load(node, ctx))

    def rank(self, node, ctx, t_ref):
        """``latency`` for a ScanBook: the service time (see :meth:`PeakEwma.level`)
        and error factor, and the RIF."""
        state = node.state
        s = state.reported_latency_ms
        if s is None or s <= 0.0:
            s, decays, until = self.level(node, ctx, t_ref)
        else:
            decays, until = False, math.inf
        base = (s, 1.0 + self.error_penalty * state.error_ewma)
        return base, self.rif.load(node, ctx), decays, min(until, state.steady_until(ctx.now))

    @staticmethod
    def cost(base, rif):
        service_ms, errors = base
        return service_ms * (rif + 1.0) * errors


# --- gRPC weighted round robin (ORCA) ------------------------------------------------


class OrcaWeightedRoundRobin:
    """gRFC A58 weighted_round_robin over heartbeat load reports.

    weight = qps / (utilisation + errorRate × penalty); a node's weight counts
    only after ``blackout_s`` of continuous non-zero weights and expires
    ``expiry_s`` after its last report; nodes without a usable weight get the
    mean of the usable ones (all equal if none). Weights are recomputed every
    ``update_s``; picks follow earliest-deadline-first, O(log n)."""

    KEY = "orca.since"

    def __init__(self, name: str = "orca-wrr", blackout_s: float = 10.0, expiry_s: float = 180.0,
                 update_s: float = 1.0, error_penalty: float = 1.0):
        self.name = name
        self.blackout_s = blackout_s
        self.expiry_s = expiry_s
        self.update_s = update_s
        self.error_penalty = error_penalty
        self._key = f"orca-wrr:{id(self)}"

    def weight(self, node, now: float) -> float | None:
        state = node.state
        extra = state.extra
        if state.report_time is None or now - state.report_time > self.expiry_s:
            extra.pop(self.KEY, None)
            return None
        qps, util = state.qps, state.cpu
        if util is None or qps is None or (qps <= 0.0 and util <= 0.0):
            extra.pop(self.KEY, None)
            return None
        denominator = util + (state.error_rate or 0.0) * self.error_penalty
        if denominator <= 0.0:
            extra.pop(self.KEY, None)
            return None
        since = extra.get(self.KEY)
        if since is None:
            extra[self.KEY] = now
            since = now
        if now - since < self.blackout_s:
            return None
        # Busy but nothing completed in the report window (a very slow or stuck
        # instance): gRPC would drop the weight and send it the mean share;
        # we keep it and give it the smallest weight instead (0.0, see _rebuild).
        return qps / denominator

    def _rebuild(self, pool, now: float, rng):
        weights = [self.weight(node, now) for node in pool.nodes]
        usable = [w for w in weights if w is not None and w > 0.0]
        mean = sum(usable) / len(usable) if usable else 1.0
        floor = 0.01 * mean
        weights = [mean if w is None else max(w, floor) for w in weights]
        # EDF: each node's next deadline is its previous one plus 1/weight;
        # random phases so equal weights do not all start together.
        heap = [(rng.random() / w, rng.random(), i, 1.0 / w) for i, w in enumerate(weights)]
        heapq.heapify(heap)
        return [now, heap]

    def pick(self, pool, ctx):
        nodes = pool.nodes
        if len(nodes) == 1:
            return nodes[0]
        sched = pool.cache.get(self._key)
        if sched is None or ctx.now - sched[0] >= self.update_s:
            sched = pool.cache[self._key] = self._rebuild(pool, ctx.now, ctx.rng)
        heap = sched[1]
        deadline, tie, i, period = heap[0]
        heapq.heapreplace(heap, (deadline + period, tie, i, period))
        return nodes[i]


# --- Envoy least_request ----------------------------------------------------------


class LeastRequestCost:
    """Envoy's (active + 1)^bias / weight; with equal weights it orders like active."""

    def __init__(self, bias: float = 1.0):
        self.bias = bias

    def load(self, node, ctx) -> float:
        active = node.state.in_flight(ctx.now) + 1.0
        if self.bias != 1.0:
            active = active ** self.bias
        return active / (node.weight if node.weight > 0 else 1e-9)


# --- ablations (lab only, deliberately weaker) ------------------------------------


class ReportedInFlight:
    """In-flight from the last heartbeat only, without counting this registry's
    dispatches since: the stale estimate that herds. Not registered for
    ``/discover``; the lab uses it to show why dispatch compensation matters."""

    def load(self, node, ctx) -> float:
        r = node.state.reported_in_flight
        return r if r is not None else 0.0


def lab_only_factories() -> dict:
    return {"least-connections-stale": lambda: FullScan(ReportedInFlight(), "least-connections-stale")}


ADAPTIVE = ("c3", "prequal", "orca-wrr", "p2c-peak-ewma", "least-request")


def register_adaptive(register) -> None:
    """Register the strong classical strategies with ``register(name, factory)``."""
    register("c3", C3)
    register("prequal", lambda: HotCold(InFlightEstimate(), LatencyAtLoad(InFlightEstimate()), 0.84, "prequal"))
    register("orca-wrr", OrcaWeightedRoundRobin)
    register("p2c-peak-ewma", lambda: PowerOfTwo(PeakEwma(), "p2c-peak-ewma"))
    register("least-request", lambda: PowerOfTwo(LeastRequestCost(), "least-request"))

