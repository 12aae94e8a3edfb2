"""The inference cache: every model's latest output, per node and per service.

The hub's worker computes a :class:`Refresh` for the services it visited in
one round, off the event loop; :meth:`InferenceCache.install` merges it in on
the loop (replacing those services' entries) and mirrors the per-node numbers
the strategies read into ``NodeState.extra`` (``ml.health`` = (score, time),
``ml.forecast`` = (predicted / current latency ratio, time)). Only nodes with
telemetry get entries, so a registry of silent instances costs nothing here.
Discovery and the endpoints only read what is here; nothing in this module
fits or predicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..balancers.ml_strategies import FORECAST_KEY, HEALTH_KEY

MAX_ANOMALIES = 10_000          # stored in total (most severe kept per service)
MAX_ANOMALIES_PER_SERVICE = 50


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
    learned_anomaly: float | None = None  # the anomaly model's reconstruction score (> 1: anomalous)
    learned_forecast_ms: float | None = None  # the forecast model's latency horizon_s ahead


@dataclass(slots=True)
class Refresh:
    """One round's results for the services it visited."""

    at: float
    nodes: dict = field(default_factory=dict)        # node_id -> NodeEntry (nodes with telemetry)
    forecasts: dict = field(default_factory=dict)    # (key, series) -> Forecast fitted this round
    dropped_forecasts: list = field(default_factory=list)
    medians: dict = field(default_factory=dict)      # service -> median latency (visited services)
    anomalies: dict = field(default_factory=dict)    # service -> [anomaly] (visited services)
    scaling: dict = field(default_factory=dict)      # service -> recommendations (services with data)
    visited: list = field(default_factory=list)      # service names
    empty: list = field(default_factory=list)        # no_nodes anomalies (services without instances)
    compute_s: float = 0.0


class InferenceCache:
    def __init__(self):
        self.current: Refresh | None = None  # the last round installed
        self.at: float | None = None
        self.installs = 0
        self.nodes: dict = {}
        self.forecasts: dict = {}
        self.medians: dict = {}
        self.anomalies: dict = {}
        self.scaling: dict = {}
        self.empty: list = []
        self.anomaly_count = 0

    def install(self, refresh: Refresh, registry) -> None:
        self.current = refresh
        self.at = refresh.at
        self.installs += 1
        for name in refresh.visited:
            old = self.anomalies.pop(name, None)
            if old:
                self.anomaly_count -= len(old)
            self.scaling.pop(name, None)
            self.medians.pop(name, None)
        for name, items in refresh.anomalies.items():
            room = min(MAX_ANOMALIES_PER_SERVICE, MAX_ANOMALIES - self.anomaly_count)
            if items and room > 0:
                items = items[:room]
                self.anomalies[name] = items
                self.anomaly_count += len(items)
        self.scaling.update(refresh.scaling)
        self.medians.update(refresh.medians)
        self.empty = refresh.empty
        for key in refresh.dropped_forecasts:
            self.forecasts.pop(key, None)
        self.forecasts.update(refresh.forecasts)
        nodes = registry.nodes
        mine = self.nodes
        at = refresh.at
        for node_id, entry in refresh.nodes.items():
            inst = nodes.get(node_id)
            if inst is None:
                mine.pop(node_id, None)
                continue
            mine[node_id] = entry
            extra = inst.state.extra
            extra[HEALTH_KEY] = (entry.score, at)
            if entry.forecast_ratio is not None:
                extra[FORECAST_KEY] = (entry.forecast_ratio, at)

    def forget_node(self, node_id: str) -> None:
        self.nodes.pop(node_id, None)

    def forget_service(self, name: str) -> None:
        old = self.anomalies.pop(name, None)
        if old:
            self.anomaly_count -= len(old)
        self.scaling.pop(name, None)
        self.medians.pop(name, None)

    def all_anomalies(self) -> list:
        out = [a for items in self.anomalies.values() for a in items]
        out.extend(self.empty)
        return out

    def age(self, now: float) -> float | None:
        return None if self.at is None else max(0.0, now - self.at)

    def node(self, node_id: str) -> NodeEntry | None:
        return self.nodes.get(node_id)
