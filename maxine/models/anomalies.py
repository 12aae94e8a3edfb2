"""Anomaly rules: the seed's types plus the learned ones.

Input is a plain :class:`NodeView` per node (built by the hub from telemetry,
its series and the models' cached outputs), so every rule is a pure function
and each type can be made to fire in a test.

| type | fires when | severity |
|---|---|---|
| ``no_nodes`` | a service seen before has no registered instance | high |
| ``no_healthy_nodes`` | a service has instances but none is alive, or every health score < 20 | critical |
| ``stale_heartbeat`` | a live node's last heartbeat is older than half its lease TTL | medium (high past 80 %) |
| ``high_response_time`` | Peak-EWMA latency > 3 × the median of the service's other nodes, or > mean + 3σ of the node's own recent history | medium (high past 2× the threshold) |
| ``response_time_trend`` | the latency forecast 60 s ahead is ≥ 1.5 × the current latency (positive trend) | medium |
| ``high_error_rate`` | error rate > 10 % | high (critical past 50 %) |
| ``anomaly_score`` | Half-Space Trees score > 0.8 over the node's feature row | medium |
| ``learned_anomaly`` | the trained autoencoder's reconstruction score > 1 (error above its threshold; only with a ``models/anomaly`` artifact) and > 2 × the median score of the service's other live nodes | medium (high past 3×) |
| ``drift`` | ADWIN detected a change in the node's latency in the last 60 s | low (medium if it got slower by 2×) |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .health import median

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
TYPES = ("high_response_time", "response_time_trend", "stale_heartbeat", "high_error_rate",
         "no_healthy_nodes", "no_nodes", "anomaly_score", "learned_anomaly", "drift")

HIGH_LATENCY_FACTOR = 3.0
HISTORY_SIGMAS = 3.0
TREND_HORIZON_S = 60.0
TREND_RATIO = 1.5
ERROR_THRESHOLD = 0.10
ANOMALY_THRESHOLD = 0.8
LEARNED_THRESHOLD = 1.0   # the anomaly model's score is error / its own threshold
LEARNED_PEER_FACTOR = 2.0  # ... and a node must also stand out from its peers: a model trained on other
                           # services' scale (the shipped one knows the simulator's) flags all nodes alike
DRIFT_HOLD_S = 60.0
STALE_FRACTION = 0.5
UNHEALTHY_SCORE = 20.0
MIN_LATENCY_MS = 1.0


@dataclass(slots=True)
class NodeView:
    node_id: str
    alive: bool = True
    heartbeat_age_s: float = 0.0
    ttl: float = 30.0
    latency_ms: float | None = None
    error: float = 0.0
    score: float = 100.0
    anomaly: float | None = None  # HST score 0..1
    drift_at: float | None = None  # when ADWIN last fired
    drift_change: tuple | None = None  # (before, after) latency estimates
    history: list = field(default_factory=list)  # recent latency samples (ms)
    forecast_60s: float | None = None  # forecast latency 60 s ahead
    learned_anomaly: float | None = None  # the anomaly model's score (error / threshold)


def _a(service, node_id, kind, value, threshold, severity) -> dict:
    out = {"serviceName": service, "type": kind, "severity": severity}
    if node_id is not None:
        out["nodeId"] = node_id
    out["value"] = None if value is None else (round(value, 4) if isinstance(value, float) else value)
    out["threshold"] = None if threshold is None else (round(threshold, 4) if isinstance(threshold, float) else threshold)
    return out


def no_nodes(service: str, empty_for_s: float) -> dict:
    return _a(service, None, "no_nodes", 0, 1, "high") | {"emptyForSeconds": round(empty_for_s, 3)}


def detect_service(service: str, nodes: list[NodeView], now: float) -> list[dict]:
    """Every anomaly of one service with registered instances."""
    out: list[dict] = []
    live = [v for v in nodes if v.alive]
    if nodes and (not live or all(v.score < UNHEALTHY_SCORE for v in live)):
        out.append(_a(service, None, "no_healthy_nodes", len(live), UNHEALTHY_SCORE, "critical")
                   | {"totalNodes": len(nodes)})
    for v in live:
        # stale heartbeat
        if v.ttl > 0 and v.heartbeat_age_s > STALE_FRACTION * v.ttl:
            sev = "high" if v.heartbeat_age_s > 0.8 * v.ttl else "medium"
            out.append(_a(service, v.node_id, "stale_heartbeat", v.heartbeat_age_s, STALE_FRACTION * v.ttl, sev))
        # high response time: against the other nodes, and against its own history
        lat = v.latency_ms
        if lat is not None and lat > MIN_LATENCY_MS:
            thresholds = []
            others = median([o.latency_ms for o in live if o is not v and o.latency_ms is not None])
            if others:
                thresholds.append(HIGH_LATENCY_FACTOR * others)
            hist = v.history[:-1]
            if len(hist) >= 10:
                mean = sum(hist) / len(hist)
                sd = math.sqrt(sum((h - mean) ** 2 for h in hist) / len(hist))
                thresholds.append(mean + HISTORY_SIGMAS * max(sd, 0.05 * mean, MIN_LATENCY_MS))
            if thresholds:
                th = min(thresholds)
                if lat > th:
                    out.append(_a(service, v.node_id, "high_response_time", lat, th,
                                  "high" if lat > 2 * th else "medium"))
            # trend
            f = v.forecast_60s
            if f is not None and f >= TREND_RATIO * lat:
                out.append(_a(service, v.node_id, "response_time_trend", f / lat, TREND_RATIO, "medium")
                           | {"currentMs": round(lat, 3), "forecastMs": round(f, 3), "horizonSeconds": TREND_HORIZON_S})
        if v.error > ERROR_THRESHOLD:
            out.append(_a(service, v.node_id, "high_error_rate", v.error, ERROR_THRESHOLD,
                          "critical" if v.error > 0.5 else "high"))
        if v.anomaly is not None and v.anomaly > ANOMALY_THRESHOLD:
            out.append(_a(service, v.node_id, "anomaly_score", v.anomaly, ANOMALY_THRESHOLD, "medium"))
        if v.learned_anomaly is not None and v.learned_anomaly > LEARNED_THRESHOLD:
            peers = median([o.learned_anomaly for o in live if o is not v and o.learned_anomaly is not None])
            threshold = max(LEARNED_THRESHOLD, LEARNED_PEER_FACTOR * peers) if peers is not None else LEARNED_THRESHOLD
            if v.learned_anomaly > threshold:
                out.append(_a(service, v.node_id, "learned_anomaly", v.learned_anomaly, threshold,
                              "high" if v.learned_anomaly > 3 * threshold else "medium"))
        if v.drift_at is not None and now - v.drift_at <= DRIFT_HOLD_S:
            before, after = v.drift_change or (None, None)
            worse = before is not None and after is not None and after > 2.0 * before
            out.append(_a(service, v.node_id, "drift", after, before, "medium" if worse else "low")
                       | {"detectedAgoSeconds": round(now - v.drift_at, 3)})
    return out


def sort_by_severity(anomalies: list[dict]) -> list[dict]:
    return sorted(anomalies, key=lambda a: (SEVERITY_ORDER.get(a.get("severity"), 9), a.get("serviceName", ""),
                                            a.get("nodeId", ""), a.get("type", "")))
