"""The learned strategies of issue 4: ``health-score``, ``predictive`` and ``ai-driven``.

All three are self-contained strategy objects (``name``, ``pick(pool, ctx)``,
``learn_one(node, latency_ms, success, now)``), so the simulator drives them
exactly as the server does. Their per-node state lives in ``node.state.extra``
under a key owned by the strategy object; in the server the ML hub
(:mod:`maxine.models.hub`) additionally writes cached model outputs into
``extra`` (``ml.health``: the health score, ``ml.forecast``: the statsmodels
forecast ratio), which the strategies read when fresh — a discovery only ever
reads cached numbers.

Every estimate is of the same quantity: the *unit cost* of a node, the latency
one request costs there per request ahead of it, u = latency / (requests in
flight at dispatch + 1). For a FCFS server that is its service time, so
u × (in-flight + 1) is the expected latency of a new request (the oracle's
shortest-expected-delay rule, with learned instead of true service times).
In-flight is NodeState's estimate (last load report + this registry's
dispatches since − reports since), which moves with every dispatch, so a full
scan does not herd.

- ``ai-driven`` — a contextual bandit: Thompson sampling over each node's
  latency (a log-normal posterior from a discounted EWMA of log-samples, its
  σ precomputed on ``learn_one``; the draw is one uniform into a 64-entry
  table of normal quantiles clipped to ±2), with the node's load as the
  context (cost = Peak-EWMA × e^(zσ) × (in-flight + 1) × error factor).
  Exploration is bounded both ways: a node whose decayed share of this
  strategy's picks exceeds ``share_cap`` (×1/n) is skipped (no flooding), and
  a node not picked for ``probe_s`` gets one probe (no starvation).
- ``predictive`` — Peak-EWMA extrapolated ``horizon_s`` ahead with its trend
  (the difference of a fast and a slow time-based EWMA, which for a linear
  ramp is (τ_slow − τ_fast) × slope; the factor is precomputed on
  ``learn_one``), times the hub's cached statsmodels forecast ratio.
- ``health-score`` — power of two choices over the Peak-EWMA × (in-flight + 1)
  cost multiplied by 100 / the hub's cached health score (when fresh): an
  unhealthy node gets proportionally less load instead of being filtered out.

``ai-driven`` and ``predictive`` evaluate ``d`` = 8 candidates per pick (a
window of the pool from a random start; the whole pool when it is smaller),
so a pick costs the same at any pool size. ``predictive`` and
``health-score`` read their candidates' costs from the pool's
:class:`~maxine.balancers.pickers.ScanBook` (recomputed when a node's
telemetry changes), so they pick what evaluating every candidate would; the
hub's cached values and the typical latency of nodes without data reach the
book within ``HUB_REFRESH_S``. ``ai-driven`` evaluates its candidates per
pick: its Thompson draw is per candidate per pick.

A model failure inside ``pick`` never propagates: the strategy counts a
fallback and answers with ``p2c-peak-ewma``.
"""

from __future__ import annotations

import logging
import math
from statistics import NormalDist

from ..telemetry import PEAK_EWMA_DECAY_S
from .estimates import PeakEwma, ewma_level
from .pickers import PowerOfTwo, first_lowest, scan_book, two_distinct

log = logging.getLogger("maxine.ml")

DEFAULT_MS = 10.0
FAILURE_FACTOR = 5.0
ERROR_PENALTY = 20.0
LATENCY_CAP_MS = 10_000.0  # NodeState's failure penalty cap
CACHE_FRESH_S = 30.0  # hub-written values older than this are ignored
HUB_REFRESH_S = 0.05  # a cached cost re-reads the hub's values (and typical latencies) this often
SAMPLE_D = 8  # candidates per pick (a random window of the pool); the whole pool when smaller

HEALTH_KEY = "ml.health"      # (score 0-100, time) written by the hub's cache
FORECAST_KEY = "ml.forecast"  # (predicted / current latency ratio, time) written by the hub

# 64 equiprobable standard-normal quantiles clipped to ±2: a Thompson draw is one
# uniform and a table read instead of a Gaussian sample
Z_TABLE = tuple(max(-2.0, min(2.0, NormalDist().inv_cdf((k + 0.5) / 64.0))) for k in range(64))


class NodeModel:
    """One node's learned latency statistics (per strategy object). O(1) per event;
    what a pick needs is precomputed here (``scale``, ``factor``)."""

    __slots__ = ("n", "mu", "var", "scale", "fast", "slow", "t", "factor", "last_pick", "share", "share_t")

    def __init__(self):
        self.n = 0          # samples seen
        self.mu = 0.0       # EWMA of log latency (ai-driven)
        self.var = 0.0      # EWMA of (log latency - mu)^2: the posterior's spread
        self.scale = 0.0    # posterior σ of log latency: sqrt(var / min(n, n_max))
        self.fast = 0.0     # time-based EWMAs of latency (ms), for the trend (predictive)
        self.slow = 0.0
        self.t = 0.0        # time of the last sample
        self.factor = 1.0   # predicted / current latency (predictive)
        self.last_pick = None
        self.share = 0.0    # decayed count of this strategy's picks of the node
        self.share_t = 0.0

    def trend(self, tau_fast: float, tau_slow: float) -> float:
        """Relative latency trend per second: (fast − slow) / slow / (τ_slow − τ_fast)."""
        if self.n < 2 or self.slow <= 0.0:
            return 0.0
        return (self.fast - self.slow) / self.slow / (tau_slow - tau_fast)


def _penalised(latency_ms: float, success: bool, current: float) -> float:
    if not success:  # a fast failure must not look like a fast node
        latency_ms = max(latency_ms, FAILURE_FACTOR * max(current, 1.0))
    return min(max(latency_ms, 0.05), LATENCY_CAP_MS)


class _Learned:
    """Shared plumbing: per-node models in ``extra``, learning, sampling, the fallback."""

    name = "learned"

    def __init__(self, name: str, alpha: float = 0.1, tau_fast: float = 1.0, tau_slow: float = 5.0,
                 d: int = SAMPLE_D):
        self.name = name
        self.key = f"ml.{name}"
        self.alpha = alpha
        self.tau_fast = tau_fast
        self.tau_slow = tau_slow
        self.d = d
        self.typical: dict[str, float] = {}  # service -> typical Peak-EWMA (for nodes without data)
        self.fallback = PowerOfTwo(PeakEwma(), "p2c-peak-ewma")
        self.fallbacks = 0
        self.last_error: str | None = None
        self.picks = 0

    def model(self, node) -> NodeModel:
        extra = node.state.extra
        m = extra.get(self.key)
        if m is None:
            m = extra[self.key] = NodeModel()
        return m

    def learn_one(self, node, latency_ms: float, success: bool, now: float) -> None:
        try:
            state = node.state
            extra = state.extra
            m = extra.get(self.key)
            if m is None:
                m = extra[self.key] = NodeModel()
            self._observe(m, latency_ms, success, now)
            e = state.ewma_ms
            if e is not None:
                service = node.service_name
                typical = self.typical.get(service)
                self.typical[service] = e if typical is None else typical + 0.05 * (e - typical)
        except Exception as exc:  # learning must never break a report
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def _observe(self, m: NodeModel, latency_ms: float, success: bool, now: float) -> None:
        m.n += 1
        m.t = now

    def window(self, values, rand):
        """The candidates, as (the first one's index, their items of ``values``, one
        per node): ``d`` consecutive nodes from a random start, wrapping around — one
        random draw per pick — or every node when there are at most ``d``."""
        n, d = len(values), self.d
        if n <= d:
            return 0, values
        start = int(rand() * n)
        end = start + d
        return start, values[start:end] if end <= n else values[start:] + values[:end - n]

    def level(self, node, now: float, t_ref: float):
        """Peak-EWMA as a ScanBook base (``ewma_level``); a node without data gets its
        service's typical latency, re-read every ``HUB_REFRESH_S``."""
        return (ewma_level(node.state, now, t_ref)
                or (self.typical.get(node.service_name, DEFAULT_MS), False, now + HUB_REFRESH_S))

    def pick(self, pool, ctx):
        nodes = pool.nodes
        self.picks += 1
        if len(nodes) == 1:
            return nodes[0]
        try:
            return self._pick(pool, nodes, ctx)
        except Exception as exc:
            self.fallbacks += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if self.fallbacks <= 3 or self.fallbacks % 1000 == 0:
                log.warning("%s: model failed (%s); answered by p2c-peak-ewma", self.name, self.last_error)
            return self.fallback.pick(pool, ctx)

    def status(self) -> dict:
        return {"name": self.name, "kind": "online", "picks": self.picks, "fallbacks": self.fallbacks,
                "fallbackActive": False, "lastError": self.last_error, "candidatesPerPick": self.d}


class AiDriven(_Learned):
    """Thompson sampling over node latencies with bounded exploration (see module doc)."""

    def __init__(self, name: str = "ai-driven", share_cap: float = 4.0, share_tau_s: float = 5.0,
                 probe_s: float = 3.0, n_max: int = 100, z_clip: float = 2.0, **kw):
        super().__init__(name, **kw)
        self.share_cap = share_cap
        self.share_tau_s = share_tau_s
        self.probe_s = probe_s
        self.n_max = n_max
        self.z_table = tuple(max(-z_clip, min(z_clip, z)) for z in Z_TABLE)
        self._pool_key = f"ai-driven:{id(self)}"  # its probe cursor and decayed pick total
        self.probes = 0
        self.capped = 0

    def _observe(self, m: NodeModel, latency_ms: float, success: bool, now: float) -> None:
        lx = math.log(_penalised(latency_ms, success, math.exp(m.mu) if m.n else latency_ms))
        if m.n == 0:
            m.mu, m.var = lx, 0.25
        else:
            d = lx - m.mu
            m.mu += self.alpha * d
            m.var += self.alpha * (d * d - m.var)
        m.n += 1
        m.t = now
        m.scale = math.sqrt(m.var / (m.n if m.n < self.n_max else self.n_max))

    def _share(self, m: NodeModel, now: float) -> float:
        dt = now - m.share_t
        if dt > 0.0:
            m.share *= math.exp(-dt / self.share_tau_s)
            m.share_t = now
        return m.share

    def _pick(self, pool, nodes, ctx):
        now = ctx.now
        n = len(nodes)
        key = self.key
        cache = pool.cache
        ps = cache.get(self._pool_key)
        if ps is None:
            ps = cache[self._pool_key] = [0, 0.0, now]  # probe cursor, decayed pick total, its time
        # starvation guard: one node per pick is checked, round-robin, O(1)
        i = ps[0] % n
        ps[0] += 1
        extra = nodes[i].state.extra
        m = extra.get(key)
        if m is None:
            m = extra[key] = NodeModel()
        if m.last_pick is None:
            m.last_pick = now  # first sight: start its probe clock
        elif now - m.last_pick > self.probe_s and nodes[i].state.error_ewma < 0.5:
            self.probes += 1
            return self._chosen(nodes[i], m, now, ps)
        dt = now - ps[2]
        if dt > 0.0:
            ps[1] *= math.exp(-dt / self.share_tau_s)
            ps[2] = now
        total = ps[1]
        cap = min(0.9, self.share_cap / n) * total if total > 2.0 * n else math.inf
        rand = ctx.rng.random
        z_table = self.z_table
        exp = math.exp
        typical = self.typical.get(pool.service_name, DEFAULT_MS)
        best = best_m = None
        best_cost = math.inf
        # a Thompson draw per candidate per pick: a cached draw per node (redrawn on its
        # results) routed worse on the tuning seeds (rotating-slow p99 776 -> 973 ms)
        for node in self.window(nodes, rand)[1]:
            state = node.state
            e = state.ewma_ms
            level = typical if e is None else (e * exp((state.ewma_time - now) / PEAK_EWMA_DECAY_S) if now > state.ewma_time else e)
            mm = state.extra.get(key)
            if mm is not None and mm.n:
                x = z_table[int(rand() * 64.0)] * mm.scale
                level *= (1.0 + x * (1.0 + x * (0.5 + x * 0.16666666666666666))) if -0.3 < x < 0.3 else exp(x)
            cost = level * (state.in_flight(now) + 1.0) * (1.0 + ERROR_PENALTY * state.error_ewma)
            # the decayed share is at most the stored one: decay only when it could matter
            if mm is not None and mm.share > cap and self._share(mm, now) > cap:
                self.capped += 1
                cost *= 1e6  # flood guard: only if nothing else is left
            if cost < best_cost:
                best, best_m, best_cost = node, mm, cost
        if best_m is None:
            best_m = self.model(best)
        return self._chosen(best, best_m, now, ps)

    def _chosen(self, node, m: NodeModel, now: float, ps):
        self._share(m, now)
        m.share += 1.0
        m.last_pick = now
        ps[1] += 1.0
        return node

    def status(self) -> dict:
        return {**super().status(), "kind": "contextual-bandit (Thompson sampling, sampled candidates)",
                "probes": self.probes, "capped": self.capped}


class Predictive(_Learned):
    """Peak-EWMA latency extrapolated along its trend (see module doc)."""

    def __init__(self, name: str = "predictive", horizon_s: float = 1.0, up_only: bool = True,
                 gain: float = 1.0, **kw):
        super().__init__(name, **kw)
        self.horizon_s = horizon_s
        self.up_only = up_only
        self.gain = gain
        self._pool_key = f"predictive:{id(self)}"

    def _observe(self, m: NodeModel, latency_ms: float, success: bool, now: float) -> None:
        x = _penalised(latency_ms, success, m.slow if m.n else latency_ms)
        if m.n == 0:
            m.fast = m.slow = x
        else:
            dt = now - m.t
            if dt < 0.0:
                dt = 0.0
            wf = 1.0 - math.exp(-dt / self.tau_fast)
            ws = 1.0 - math.exp(-dt / self.tau_slow)
            m.fast += (wf if wf > 0.02 else 0.02) * (x - m.fast)
            m.slow += (ws if ws > 0.005 else 0.005) * (x - m.slow)
        m.n += 1
        m.t = now
        m.factor = self.factor(m)

    def factor(self, m: NodeModel) -> float:
        """Predicted / current latency ``horizon_s`` ahead, from the node's trend."""
        t = m.trend(self.tau_fast, self.tau_slow)
        if self.up_only and t < 0.0:
            return 1.0
        f = 1.0 + self.gain * t * (self.horizon_s + self.tau_fast)
        return 0.5 if f < 0.5 else (3.0 if f > 3.0 else f)

    def unit(self, node, u: float, now: float) -> tuple:
        """What the cost is made of besides the load, given the node's latency
        level ``u``: ``u`` by its trend and the hub's forecast, and the error factor."""
        state = node.state
        extra = state.extra
        m = extra.get(self.key)
        if m is not None and m.n > 1:
            u *= m.factor
        cached = extra.get(FORECAST_KEY)
        if cached is not None and now - cached[1] < CACHE_FRESH_S:
            r = cached[0]
            u *= 0.5 if r < 0.5 else (2.0 if r > 2.0 else r)
        return u, 1.0 + ERROR_PENALTY * state.error_ewma

    @staticmethod
    def cost(unit, in_flight):
        u, errors = unit
        return u * (in_flight + 1.0) * errors

    def rank(self, node, ctx, t_ref):
        """The cost for a ScanBook. The hub's forecast and the service's typical
        latency change without telling the book: entries re-read them every
        ``HUB_REFRESH_S``."""
        now = ctx.now
        state = node.state
        u, decays, until = self.level(node, now, t_ref)
        until = min(until, state.steady_until(now), now + HUB_REFRESH_S)
        return self.unit(node, u, now), state.in_flight(now), decays, until

    def _pick(self, pool, nodes, ctx):
        book = scan_book(pool, self._pool_key, self, ctx)
        return self._lowest(nodes, book.comparable(ctx.now), ctx.rng.random)

    def scan(self, pool, ctx):
        """The exact pick: every candidate's cost evaluated now."""
        nodes = pool.nodes
        now = ctx.now
        typical = self.typical.get(pool.service_name, DEFAULT_MS)
        costs = []
        for node in nodes:
            state = node.state
            e = state.peak_ewma(now)
            costs.append(self.cost(self.unit(node, typical if e is None else e, now), state.in_flight(now)))
        return self._lowest(nodes, costs, ctx.rng.random)

    def _lowest(self, nodes, costs, rand):
        """The lowest of the window's ``costs`` (one per node), ties broken at random."""
        start, costs = self.window(costs, rand)
        return nodes[(start + first_lowest(costs, rand)) % len(nodes)]

    def status(self) -> dict:
        return {**super().status(), "kind": "trend forecast (fast/slow EWMA + cached Holt), sampled candidates"}


class HealthScore(_Learned):
    """Power of two choices over Peak-EWMA × (in-flight + 1), scaled by health (see module doc).

    The strategy is its own load estimate (``load``) under the shared ``PowerOfTwo`` picker."""

    def __init__(self, name: str = "health-score", **kw):
        super().__init__(name, **kw)
        self.peak = PeakEwma()  # the same level (and typical latency for new nodes) as p2c-peak-ewma
        self._pool_key = f"health-score:{id(self)}"

    def learn_one(self, node, latency_ms: float, success: bool, now: float) -> None:
        pass  # reads NodeState and the hub's cache only

    def load(self, node, ctx) -> float:
        latency = self.peak.latency(node, ctx)
        return self.cost((latency, self.score(node, ctx.now)), node.state.in_flight(ctx.now))

    @staticmethod
    def score(node, now: float) -> float:
        # the hub's cached score (latency vs the service, errors, anomaly, drift, staleness)
        # scales the cost; without one (the lab) this is exactly p2c-peak-ewma: a local
        # error term, even a mild one, lost to it on rotating-slow (tuning seeds 0-15)
        score = 100.0
        hub = node.state.extra.get(HEALTH_KEY)
        if hub is not None and now - hub[1] < CACHE_FRESH_S:
            score = float(hub[0])
        return score if score > 1.0 else 1.0

    @staticmethod
    def cost(base, in_flight):
        latency, score = base
        return latency * (in_flight + 1.0) * 100.0 / score

    def rank(self, node, ctx, t_ref):
        """``load`` for a ScanBook; the hub's scores change without telling the
        book, so entries re-read them every ``HUB_REFRESH_S``."""
        level, in_flight, decays, until = self.peak.rank(node, ctx, t_ref)
        return (level, self.score(node, ctx.now)), in_flight, decays, min(until, ctx.now + HUB_REFRESH_S)

    def scan(self, pool, ctx):
        """The exact pick: ``PowerOfTwo`` over :meth:`load`, both candidates evaluated now."""
        return PowerOfTwo(self, self.name).pick(pool, ctx)

    def _pick(self, pool, nodes, ctx):
        """``PowerOfTwo``'s pick (the same two random draws) on the pool's ScanBook."""
        book = scan_book(pool, self._pool_key, self, ctx)
        i, j = two_distinct(len(nodes), ctx.rng.random)
        key = book.key
        if book.decays[i] is not book.decays[j]:
            key = book.comparable(ctx.now)
        return nodes[j if key[j] < key[i] else i]

    def status(self) -> dict:
        return {**super().status(), "kind": "power of two over Peak-EWMA cost × 100 / health score (cached)",
                "candidatesPerPick": 2}


ML_STRATEGIES = ("health-score", "predictive", "ai-driven")


def register_ml(register) -> None:
    """Register the learned strategies with ``register(name, factory)``."""
    register("health-score", HealthScore)
    register("predictive", Predictive)
    register("ai-driven", AiDriven)
