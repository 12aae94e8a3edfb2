"""Scaling recommendations: forecast load against observed per-instance capacity.

- **load** (requests/s for the service): the larger of the summed instance
  load reports (``qps``) and this registry's dispatch rate, sampled by the hub
  on its timer; **forecast load** = the Holt/linear forecast of that series
  ``horizon_s`` ahead (never below the current load when the trend is up);
- **capacity per instance** (requests/s a single instance can serve): for each
  node the best evidence available — qps / utilisation when it reports both
  (utilisation ≥ 5 %), else 1000 / its reported p50 service time, else 1000 /
  its Peak-EWMA latency — and the service's capacity is the median over nodes;
- recommended instances = ceil(forecast load / (capacity × target utilisation)),
  at least 1; ``scale_up`` if above the current healthy count, ``scale_down``
  if at least 2 below it (hysteresis), else ``none``. Fixed-threshold signals
  (error rate > 10 %, all unhealthy) add a ``scale_up`` with their own reason.
"""

from __future__ import annotations

import math

TARGET_UTILIZATION = 0.7


def node_capacity(qps, cpu, p50_ms, latency_ms) -> float | None:
    if qps is not None and cpu is not None and cpu >= 0.05 and qps > 0:
        return qps / cpu
    if p50_ms is not None and p50_ms > 0:
        return 1000.0 / p50_ms
    if latency_ms is not None and latency_ms > 0:
        return 1000.0 / latency_ms
    return None


def recommend(service: str, nodes: list[dict], load_now: float | None, load_forecast: float | None,
              confidence: float, horizon_s: float, target: float = TARGET_UTILIZATION) -> list[dict]:
    """``nodes``: dicts with healthy, qps, cpu, p50, latency, inFlight, error."""
    total = len(nodes)
    healthy = [n for n in nodes if n.get("healthy")]
    caps = sorted(c for c in (node_capacity(n.get("qps"), n.get("cpu"), n.get("p50"), n.get("latency"))
                              for n in healthy) if c is not None and math.isfinite(c))
    capacity = caps[len(caps) // 2] if caps else None
    lats = [n["latency"] for n in healthy if n.get("latency") is not None]
    errors = [n.get("error", 0.0) for n in healthy]
    metrics = {
        "totalNodes": total, "healthyNodes": len(healthy),
        "avgResponseTime": round(sum(lats) / len(lats), 3) if lats else None,
        "avgConnectionsPerNode": round(sum(n.get("inFlight", 0.0) for n in healthy) / len(healthy), 3) if healthy else 0.0,
        "avgErrorRate": round(sum(errors) / len(errors), 4) if errors else 0.0,
        "currentLoad": None if load_now is None else round(load_now, 3),
        "forecastLoad": None if load_forecast is None else round(load_forecast, 3),
        "capacityPerInstance": None if capacity is None else round(capacity, 3),
        "targetUtilization": target, "horizonSeconds": horizon_s,
    }
    recs = []
    base = {"serviceName": service, "metrics": metrics}
    if capacity and load_forecast is not None and len(healthy) > 0:
        needed = max(1, math.ceil(load_forecast / (capacity * target) - 1e-9))
        util = load_forecast / (capacity * len(healthy))
        metrics["forecastUtilization"] = round(util, 4)
        if needed > len(healthy):
            action = "scale_up"
            reason = (f"Forecast load {load_forecast:.1f} req/s needs {needed} instances at {target:.0%} of "
                      f"{capacity:.1f} req/s each; {len(healthy)} healthy")
        elif needed <= len(healthy) - 2:
            action = "scale_down"
            reason = (f"Forecast load {load_forecast:.1f} req/s fits in {needed} instances at {target:.0%} of "
                      f"{capacity:.1f} req/s each; {len(healthy)} healthy")
        else:
            action = "none"
            reason = f"Forecast utilisation {util:.0%} of observed capacity"
        recs.append({**base, "action": action, "reason": reason, "confidence": round(confidence, 3),
                     "recommendedInstances": needed if action != "none" else len(healthy)})
    else:
        recs.append({**base, "action": "none", "reason": "Not enough load or capacity data yet",
                     "confidence": 0.0, "recommendedInstances": max(len(healthy), total and 1)})
    if total and not healthy:
        recs.append({**base, "action": "scale_up", "reason": "No healthy instances", "confidence": 0.9,
                     "recommendedInstances": max(1, total)})
    elif errors and metrics["avgErrorRate"] > 0.10 and recs[0]["action"] != "scale_up":
        recs.append({**base, "action": "scale_up",
                     "reason": f"High error rate ({metrics['avgErrorRate']:.0%})", "confidence": 0.6,
                     "recommendedInstances": len(healthy) + 1})
    return recs
