"""The health score: 0-100, higher is better, from latency, errors, anomaly and drift.

A pure function of what is known about a node, cheap enough to run for every
node on every cache refresh (and per pool in the simulator):

    score = 100
          × (1 − error rate)                 client error EWMA, or the self-reported rate if higher
          × min(1, median / latency)^½       latency relative to the service's median (Peak-EWMA)
          × (1 − 0.5 × anomaly)              the anomaly detector's score above its threshold, 0..1
          × (0.8 if drift else 1)            ADWIN flagged a change in the node's latency recently
          × staleness                        1 until half the lease has passed without a heartbeat, then down to 0
          × 0 if the lease has passed
"""

from __future__ import annotations

import math

ANOMALY_WEIGHT = 0.5
DRIFT_FACTOR = 0.8


def median(values) -> float | None:
    """The median of the values that are not None, or None if there are none."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def service_latency(nodes, now: float) -> float | None:
    """The median Peak-EWMA latency of the nodes that have one."""
    return median(n.state.peak_ewma(now) for n in nodes)


def error_rate(state) -> float:
    err = state.error_ewma
    if state.error_rate is not None and state.error_rate > err:
        err = state.error_rate
    return min(max(err, 0.0), 1.0)


def score(error: float, latency_ms: float | None, median_ms: float | None, anomaly: float = 0.0,
          drift: bool = False, staleness: float = 0.0, alive: bool = True) -> float:
    """The score from its inputs; ``staleness`` = time since the last heartbeat / lease TTL."""
    if not alive:
        return 0.0
    s = 100.0 * (1.0 - min(max(error, 0.0), 1.0))
    if latency_ms is not None and median_ms and latency_ms > median_ms > 0.0:
        s *= math.sqrt(median_ms / latency_ms)
    s *= 1.0 - ANOMALY_WEIGHT * min(max(anomaly, 0.0), 1.0)
    if drift:
        s *= DRIFT_FACTOR
    if staleness > 0.5:
        s *= max(0.0, 1.0 - (staleness - 0.5) * 2.0)
    return round(s, 2)


def node_score(node, now: float, median_ms: float | None = None, anomaly: float = 0.0,
               drift: bool = False) -> float:
    """The score of an :class:`~maxine.registry.Instance` at ``now``."""
    state = node.state
    ttl = getattr(node, "ttl", 0.0) or 0.0
    last = getattr(node, "last_heartbeat", None)
    staleness = (now - last) / ttl if ttl > 0 and last is not None else 0.0
    deadline = getattr(node, "deadline", None)
    alive = deadline is None or now < deadline
    return score(error_rate(state), state.peak_ewma(now), median_ms, anomaly, drift, staleness, alive)
