"""Load estimates: what a picker minimises. Each is O(1) per node."""

from __future__ import annotations

import math


class InFlight:
    """Requests in flight (dispatches not yet reported, corrected by the
    instance's own load report)."""

    def load(self, node, ctx) -> float:
        return node.state.in_flight(ctx.now)


class WeightedInFlight:
    """In-flight per unit of weight: (in-flight + 1) / weight."""

    def load(self, node, ctx) -> float:
        return (node.state.in_flight(ctx.now) + 1.0) / node.weight


class PeakEwma:
    """Finagle/Linkerd's cost: Peak-EWMA latency × (in-flight + 1).

    A node with no latency data yet is costed at the typical latency seen in
    its service, so a new instance is neither flooded nor starved."""

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


class MetadataCost:
    """Lowest ``metadata.cost`` first (missing cost sorts last), then fewer in flight."""

    def load(self, node, ctx) -> tuple:
        cost = node.metadata.get("cost")
        if not isinstance(cost, (int, float)) or isinstance(cost, bool) or math.isnan(cost):
            cost = math.inf
        return (cost, node.state.in_flight(ctx.now))
