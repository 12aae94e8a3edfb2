"""Load estimates: what a picker minimises. Each is O(1) per node.

``load(node, ctx)`` is the load now. The estimates a
:class:`~maxine.balancers.pickers.ScanBook` caches also split it in two:
``rank(node, ctx, t_ref) -> (base, q, decays, until)``, a part no dispatch
moves and a count every dispatch moves by one, and ``cost(base, q) -> key``,
which orders nodes as ``load`` does until ``until`` unless the node's
telemetry changes (see ``ScanBook``); ``load`` is ``cost`` of the two now.
"""

from __future__ import annotations

import math

from ..telemetry import PEAK_EWMA_DECAY_S

TYPICAL_REFRESH_S = 0.05  # a node costed at its service's typical latency re-reads it this often


class InFlight:
    """Requests in flight (dispatches not yet reported, corrected by the
    instance's own load report)."""

    def load(self, node, ctx) -> float:
        return node.state.in_flight(ctx.now)

    def rank(self, node, ctx, t_ref):
        state = node.state
        return None, state.in_flight(ctx.now), False, state.steady_until(ctx.now)

    @staticmethod
    def cost(base, q):
        return q


class WeightedInFlight:
    """In-flight per unit of weight: (in-flight + 1) / weight."""

    def load(self, node, ctx) -> float:
        return self.cost(node.weight, node.state.in_flight(ctx.now))

    def rank(self, node, ctx, t_ref):
        state = node.state
        return node.weight, state.in_flight(ctx.now), False, state.steady_until(ctx.now)

    @staticmethod
    def cost(weight, q):
        return (q + 1.0) / weight


class PeakEwma:
    """Finagle/Linkerd's cost: Peak-EWMA latency × (in-flight + 1).

    A node with no latency data yet is costed at the typical latency seen in
    its service, so a new instance is neither flooded nor starved. (The
    typical latency moves towards each node's Peak-EWMA whenever that node is
    costed: at every evaluation by ``load``, at every recompute of its entry
    by ``rank``.)"""

    def __init__(self, default_ms: float = 10.0):
        self.default_ms = default_ms
        self.typical: dict[str, float] = {}

    def latency(self, node, ctx) -> float:
        ewma = node.state.peak_ewma(ctx.now)
        service = node.service_name
        if ewma is None:
            return self.typical.get(service, self.default_ms)
        typical = self.typical.get(service)
        self.typical[service] = ewma if typical is None else typical + 0.05 * (ewma - typical)
        return ewma

    def load(self, node, ctx) -> float:
        return self.cost(self.latency(node, ctx), node.state.in_flight(ctx.now))

    def level(self, node, ctx, t_ref):
        """``latency`` as a ScanBook base: ``(base, decays, until)``. A node
        without data gets its service's typical latency, re-read every
        ``TYPICAL_REFRESH_S``."""
        latency = PeakEwma.latency(self, node, ctx)
        return ewma_level(node.state, ctx.now, t_ref) or (latency, False, ctx.now + TYPICAL_REFRESH_S)

    def rank(self, node, ctx, t_ref):
        level, decays, until = self.level(node, ctx, t_ref)
        state = node.state
        return level, state.in_flight(ctx.now), decays, min(until, state.steady_until(ctx.now))

    @staticmethod
    def cost(latency, q):
        return latency * (q + 1.0)


def ewma_level(state, now: float, t_ref: float):
    """Peak-EWMA as a ScanBook base, ``(base, decays, until)``, or None without data.
    It decays by exp(-(now - t)/tau) for every node alike, so the key
    ewma × exp((t - t_ref)/tau) orders nodes as Peak-EWMA does at any later time."""
    e = state.ewma_ms
    if e is None:
        return None
    if state.ewma_time > now:  # not decaying before then
        return e, False, state.ewma_time
    return e * math.exp((state.ewma_time - t_ref) / PEAK_EWMA_DECAY_S), True, math.inf


class MetadataCost:
    """Lowest ``metadata.cost`` first (missing cost sorts last), then fewer in flight."""

    def load(self, node, ctx) -> tuple:
        return self.cost(self.price(node), node.state.in_flight(ctx.now))

    @staticmethod
    def price(node) -> float:
        cost = node.metadata.get("cost")
        if not isinstance(cost, (int, float)) or isinstance(cost, bool) or math.isnan(cost):
            cost = math.inf
        return cost

    def rank(self, node, ctx, t_ref):
        state = node.state
        return self.price(node), state.in_flight(ctx.now), False, state.steady_until(ctx.now)

    @staticmethod
    def cost(price, q):
        return (price, q)
