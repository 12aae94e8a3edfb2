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
  unit cost (a log-normal posterior from a discounted EWMA of log-samples, so
  it never stops exploring and tracks changes), with the node's load as the
  context (cost = sampled u × (in-flight + 1) × error factor). Exploration is
  bounded both ways: the posterior draw is clipped to ±2σ, a node whose
  decayed share of this strategy's picks exceeds ``share_cap`` (×1/n) is
  skipped (no flooding, e.g. of a new or fast-failing node), and a node not
  picked for ``probe_s`` gets one probe (no starvation: a recovered node is
  noticed). Reward = the reported latency, failures counted as slow.
- ``predictive`` — the unit cost extrapolated ``horizon_s`` ahead with its
  trend (the difference of a fast and a slow time-based EWMA, which for a
  linear ramp is (τ_slow − τ_fast) × slope), so nodes that are getting worse
  are avoided before they are bad, and recovering ones are returned to
  sooner; multiplied by the hub's statsmodels forecast ratio when one is cached.
- ``health-score`` — power of two choices among the best-scored nodes (score
  ≥ ``keep`` × the best score, at least two): the two sampled candidates are
  compared on load (u × (in-flight + 1)) divided by score. Scores come from
  the hub's inference cache when fresh, else from :func:`maxine.models.health.score`
  computed per pool at most every ``refresh_s`` and cached in ``pool.cache``.

A model failure inside ``pick`` never propagates: the strategy counts a
fallback and answers with ``p2c-peak-ewma``.
"""

from __future__ import annotations

import logging
import math
from collections import deque

from .estimates import PeakEwma
from .pickers import PowerOfTwo

log = logging.getLogger("maxine.ml")

DEFAULT_MS = 10.0
FAILURE_FACTOR = 5.0
ERROR_PENALTY = 20.0
LATENCY_CAP_MS = 10_000.0  # NodeState's failure penalty cap
CACHE_FRESH_S = 30.0  # hub-written values older than this are ignored

HEALTH_KEY = "ml.health"      # (score 0-100, time) written by the hub's cache
FORECAST_KEY = "ml.forecast"  # (predicted / current latency ratio, time) written by the hub


class NodeModel:
    """One node's learned latency statistics (per strategy object). O(1) per event."""

    __slots__ = ("n", "mu", "var", "fast", "slow", "t", "last_pick", "share", "share_t")

    def __init__(self):
        self.n = 0          # samples seen
        self.mu = 0.0       # EWMA of log latency
        self.var = 0.0      # EWMA of (log latency - mu)^2: the posterior's spread
        self.fast = 0.0     # time-based EWMAs of latency (ms), for the trend
        self.slow = 0.0
        self.t = 0.0        # time of the last sample
        self.last_pick = None
        self.share = 0.0    # decayed count of this strategy's picks of the node
        self.share_t = 0.0

    def observe(self, latency_ms: float, success: bool, state, now: float, alpha: float,
                tau_fast: float, tau_slow: float) -> None:
        if not success:  # a fast failure must not look like a fast node
            current = math.exp(self.mu) if self.n else latency_ms
            latency_ms = max(latency_ms, FAILURE_FACTOR * max(current, 1.0))
        x = min(max(latency_ms, 0.05), LATENCY_CAP_MS)
        lx = math.log(x)
        if self.n == 0:
            self.mu, self.var, self.fast, self.slow = lx, 0.25, x, x
        else:
            d = lx - self.mu
            self.mu += alpha * d
            self.var += alpha * (d * d - self.var)
            dt = max(now - self.t, 0.0)
            wf = max(1.0 - math.exp(-dt / tau_fast), 0.02)
            ws = max(1.0 - math.exp(-dt / tau_slow), 0.005)
            self.fast += wf * (x - self.fast)
            self.slow += ws * (x - self.slow)
        self.n += 1
        self.t = now

    def trend(self, tau_fast: float, tau_slow: float) -> float:
        """Relative latency trend per second: (fast − slow) / slow / (τ_slow − τ_fast)."""
        if self.n < 2 or self.slow <= 0.0:
            return 0.0
        return (self.fast - self.slow) / self.slow / (tau_slow - tau_fast)


class _Learned:
    """Shared plumbing: per-node models in ``extra``, learning, the fallback."""

    name = "learned"

    def __init__(self, name: str, alpha: float = 0.1, tau_fast: float = 1.0, tau_slow: float = 5.0):
        self.name = name
        self.key = f"ml.{name}"
        self.alpha = alpha
        self.tau_fast = tau_fast
        self.tau_slow = tau_slow
        self.peak = PeakEwma()  # the level: NodeState's Peak-EWMA, the service's typical one if unknown
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
            self.model(node).observe(latency_ms, success, node.state, now, self.alpha,
                                     self.tau_fast, self.tau_slow)
        except Exception as exc:  # learning must never break a report
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

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
                "fallbackActive": False, "lastError": self.last_error}


class AiDriven(_Learned):
    """Thompson sampling over node latencies with bounded exploration (see module doc)."""

    def __init__(self, name: str = "ai-driven", share_cap: float = 4.0, share_tau_s: float = 5.0,
                 probe_s: float = 3.0, n_max: int = 100, z_clip: float = 2.0, **kw):
        super().__init__(name, **kw)
        self.share_cap = share_cap
        self.share_tau_s = share_tau_s
        self.probe_s = probe_s
        self.n_max = n_max
        self.z_clip = z_clip
        self._probe_key = ("ai-probe", id(self))
        self.probes = 0
        self.capped = 0

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
        models = []
        for node in nodes:
            extra = node.state.extra
            m = extra.get(key)
            if m is None:
                m = extra[key] = NodeModel()
            models.append(m)
        # starvation guard: one node per pick is checked, round-robin, O(1)
        cache = pool.cache
        i = cache.get(self._probe_key, 0)
        cache[self._probe_key] = i + 1
        i %= n
        m = models[i]
        if m.last_pick is None:
            m.last_pick = now  # first sight: start its probe clock
        elif now - m.last_pick > self.probe_s and nodes[i].state.error_ewma < 0.5:
            self.probes += 1
            return self._chosen(nodes[i], m, now)
        gauss = ctx.rng.gauss
        zc = self.z_clip
        n_max = self.n_max
        latency = self.peak.latency
        share_of = self._share
        shares = [share_of(mm, now) for mm in models]
        total = sum(shares)
        cap = min(0.9, self.share_cap / n) * total if total > 2.0 * n else math.inf
        best, best_cost = 0, math.inf
        for k in range(n):
            node = nodes[k]
            mm = models[k]
            state = node.state
            level = latency(node, ctx)
            if mm.n:
                z = gauss(0.0, 1.0)
                z = zc if z > zc else (-zc if z < -zc else z)
                level *= math.exp(z * math.sqrt(mm.var / (mm.n if mm.n < n_max else n_max)))
            cost = level * (state.in_flight(now) + 1.0) * (1.0 + ERROR_PENALTY * state.error_ewma)
            if shares[k] > cap:
                self.capped += 1
                cost *= 1e6  # flood guard: only if nothing else is left
            if cost < best_cost:
                best, best_cost = k, cost
        return self._chosen(nodes[best], models[best], now)

    def _chosen(self, node, m: NodeModel, now: float):
        self._share(m, now)
        m.share += 1.0
        m.last_pick = now
        return node

    def status(self) -> dict:
        return {**super().status(), "kind": "contextual-bandit (Thompson sampling)",
                "probes": self.probes, "capped": self.capped}


class Predictive(_Learned):
    """Peak-EWMA latency extrapolated along its trend (see module doc)."""

    def __init__(self, name: str = "predictive", horizon_s: float = 1.0, up_only: bool = True,
                 gain: float = 1.0, **kw):
        super().__init__(name, **kw)
        self.horizon_s = horizon_s
        self.up_only = up_only
        self.gain = gain

    def factor(self, m: NodeModel) -> float:
        """Predicted / current latency ``horizon_s`` ahead, from the node's trend."""
        t = m.trend(self.tau_fast, self.tau_slow)
        if self.up_only and t < 0.0:
            return 1.0
        f = 1.0 + self.gain * t * (self.horizon_s + self.tau_fast)
        return 0.5 if f < 0.5 else (3.0 if f > 3.0 else f)

    def _pick(self, pool, nodes, ctx):
        now = ctx.now
        key = self.key
        latency = self.peak.latency
        rand = ctx.rng.random
        best, best_cost, ties = None, math.inf, 0
        for node in nodes:
            state = node.state
            extra = state.extra
            u = latency(node, ctx)
            m = extra.get(key)
            if m is not None and m.n > 1:
                u *= self.factor(m)
            cached = extra.get(FORECAST_KEY)
            if cached is not None and now - cached[1] < CACHE_FRESH_S:
                u *= min(max(cached[0], 0.5), 2.0)
            cost = u * (state.in_flight(now) + 1.0) * (1.0 + ERROR_PENALTY * state.error_ewma)
            if cost < best_cost:
                best, best_cost, ties = node, cost, 1
            elif cost == best_cost:
                ties += 1
                if rand() * ties < 1.0:
                    best = node
        return best

    def status(self) -> dict:
        return {**super().status(), "kind": "trend forecast (fast/slow EWMA + cached Holt)"}


class HealthScore(_Learned):
    """Power of two choices among the best-scored nodes (see module doc)."""

    def __init__(self, name: str = "health-score", keep: float = 0.5, refresh_s: float = 0.25,
                 min_fraction: float = 0.5, **kw):
        super().__init__(name, **kw)
        self.keep = keep
        self.min_fraction = min_fraction
        self.refresh_s = refresh_s
        self._key = ("health-score", id(self))

    def learn_one(self, node, latency_ms: float, success: bool, now: float) -> None:
        pass  # reads NodeState and the hub's cache only

    def scores(self, pool, now: float) -> tuple[list[float], list[int]]:
        """(scores, indices of the best-scored nodes), cached per pool for ``refresh_s``."""
        cached = pool.cache.get(self._key)
        if cached is not None and 0.0 <= now - cached[0] < self.refresh_s:
            return cached[1], cached[2]
        from ..models.health import node_score, service_latency

        nodes = pool.nodes
        median = service_latency(nodes, now)
        scores = []
        for node in nodes:
            hub = node.state.extra.get(HEALTH_KEY)
            if hub is not None and now - hub[1] < CACHE_FRESH_S:
                scores.append(float(hub[0]))
            else:
                scores.append(node_score(node, now, median))
        top = max(scores)
        best = [k for k, s in enumerate(scores) if s >= self.keep * top]
        floor = max(2, (len(nodes) * self.min_fraction) // 1)
        if len(best) < floor:  # never concentrate on a few nodes: that herds
            best = sorted(range(len(nodes)), key=lambda k: -scores[k])[:int(floor)]
        pool.cache[self._key] = (now, scores, best)
        return scores, best

    def _pick(self, pool, nodes, ctx):
        now = ctx.now
        scores, best = self.scores(pool, now)
        rand = ctx.rng.random
        m = len(best)
        a = int(rand() * m)
        b = int(rand() * (m - 1))
        if b >= a:
            b += 1
        i, j = best[a], best[b]
        return nodes[j] if self._cost(nodes[j], scores[j], ctx) < self._cost(nodes[i], scores[i], ctx) else nodes[i]

    def _cost(self, node, score: float, ctx) -> float:
        return self.peak.latency(node, ctx) * (node.state.in_flight(ctx.now) + 1.0) / max(score, 1.0)

    def status(self) -> dict:
        return {**super().status(), "kind": "health score (cached) + power of two"}


ML_STRATEGIES = ("health-score", "predictive", "ai-driven")


def register_ml(register) -> None:
    """Register the learned strategies with ``register(name, factory)``."""
    register("health-score", HealthScore)
    register("predictive", Predictive)
    register("ai-driven", AiDriven)
