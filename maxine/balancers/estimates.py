"""Load estimates: what a picker minimises. Each is O(1) per node.

``load(node, ctx)`` is the load now. ``rank(node, ctx, t_ref)`` is what
:class:`~maxine.balancers.pickers.ScanBook` caches: ``(key, decays, until)``,
a key ordering nodes as ``load`` does until ``until`` unless the node's
telemetry changes (see ``ScanBook``).
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
        return state.in_flight(ctx.now), False, state.steady_until(ctx.now)


class WeightedInFlight:
    """In-flight per unit of weight: (in-flight + 1) / weight."""

    def load(self, node, ctx) -> float:
        return (node.state.in_flight(ctx.now) + 1.0) / node.weight

    def rank(self, node, ctx, t_ref):
        return self.load(node, ctx), False, node.state.steady_until(ctx.now)


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
        return self.latency(node, ctx) * (node.state.in_flight(ctx.now) + 1.0)

    def level(self, node, ctx, t_ref):
        """``latency`` as a ScanBook key: ``(key, decays, until)``. A node
        without data gets its service's typical latency, re-read every
        ``TYPICAL_REFRESH_S``."""
        latency = PeakEwma.latency(self, node, ctx)
        return ewma_level(node.state, ctx.now, t_ref) or (latency, False, ctx.now + TYPICAL_REFRESH_S)

    def rank(self, node, ctx, t_ref):
        key, decays, until = self.level(node, ctx, t_ref)
        state = node.state
        return key * (state.in_flight(ctx.now) + 1.0), decays, min(until, state.steady_until(ctx.now))


def ewma_level(state, now: float, t_ref: float):
    """Peak-EWMA as a ScanBook key, ``(key, decays, until)``, or None without data.
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
        cost = node.metadata.get("cost")
        if not isinstance(cost, (int, float)) or isinstance(cost, bool) or math.isnan(cost):
            cost = math.inf
        return (cost, node.state.in_flight(ctx.now))

    def rank(self, node, ctx, t_ref):
        return self.load(node, ctx), False, node.state.steady_until(ctx.now)
