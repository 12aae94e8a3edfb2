"""The inference cache: every model's latest output, per node and per service.

The hub's worker computes a :class:`Refresh` off the event loop; :meth:`InferenceCache.install`
swaps it in on the loop in one step and mirrors the per-node numbers the
strategies read into ``NodeState.extra`` (``ml.health`` = (score, time),
``ml.forecast`` = (predicted / current latency ratio, time)). Discovery and the
endpoints only read what is here; nothing in this module fits or predicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..balancers.ml_strategies import FORECAST_KEY, HEALTH_KEY


@dataclass(slots=True)
class NodeEntry:
    service: str
    score: float
    latency_ms: float | None
    error: float
    anomaly: float | None = None
    drift_at: float | None = None
    expected_ms: float | None = None  # the river latency predictor's estimate
    forecast_ratio: float | None = None  # forecast latency 10 s ahead / current
    staleness: float = 0.0


@dataclass(slots=True)
class Refresh:
    at: float
    nodes: dict = field(default_factory=dict)        # node_id -> NodeEntry
    forecasts: dict = field(default_factory=dict)    # (key, series) -> Forecast
    medians: dict = field(default_factory=dict)      # service -> median latency
    anomalies: list = field(default_factory=list)
    scaling: dict = field(default_factory=dict)      # service -> recommendations
    compute_s: float = 0.0


class InferenceCache:
    def __init__(self):
        self.current: Refresh | None = None
        self.installs = 0

    def install(self, refresh: Refresh, registry) -> None:
        self.current = refresh
        self.installs += 1
        nodes = registry.nodes
        for node_id, entry in refresh.nodes.items():
            inst = nodes.get(node_id)
            if inst is None:
                continue
            extra = inst.state.extra
            extra[HEALTH_KEY] = (entry.score, refresh.at)
            if entry.forecast_ratio is not None:
                extra[FORECAST_KEY] = (entry.forecast_ratio, refresh.at)

    def age(self, now: float) -> float | None:
        return None if self.current is None else max(0.0, now - self.current.at)

    def node(self, node_id: str) -> NodeEntry | None:
        return None if self.current is None else self.current.nodes.get(node_id)
