"""The ML state of one server: online learners, forecasts, the inference cache.

Data flow (nothing here runs per discovery):

- **reports** — the hub is an observer in ``maxine.balancers.observers``, so
  ``/record-response-time`` calls :meth:`MLHub.learn_one`, which only appends
  (latency, success, time) to a bounded deque in ``NodeState.extra`` (O(1));
  heartbeats' load reports are already in ``NodeState``;
- **every ``sample_s``** (background job): :meth:`snapshot` reads every node's
  telemetry and feature row on the event loop (cheap, O(nodes)); :meth:`compute`
  then runs in a single worker thread (``run_in_executor``): river learners
  (latency predictor and Half-Space Trees per service, ADWIN per node), the
  series, statsmodels forecasts every ``forecast_s`` (at most ``max_fits``
  series per round), health scores, anomalies and scaling recommendations;
  :meth:`install` swaps the result into the :class:`~maxine.models.cache.InferenceCache`
  on the loop. River and statsmodels objects are only ever touched by that thread.
- **reads** — ``/health-score``, ``/predict-health``, ``/anomalies``,
  ``/scaling/recommendations``, ``/models``, the dashboard and Prometheus read
  the cache; the strategies read ``NodeState.extra``.

Settings (environment): ``MAXINE_ML_SAMPLE_S`` (1.0), ``MAXINE_ML_FORECAST_S``
(5.0), ``MAXINE_ML_MAX_FITS`` (32), ``MAXINE_ML=off`` disables the job.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from ..registry import REGISTERED
from . import anomalies as rules
from . import health, scaling
from .cache import InferenceCache, NodeEntry, Refresh
from .features import FEATURE_VERSION, node_row
from .forecast import Forecaster, Series
from .online import AnomalyDetector, DriftDetector, LatencyPredictor

log = logging.getLogger("maxine.ml")

REPORTS_KEY = "ml.reports"
MAX_SERVICES = 1000
MAX_EMPTY_SERVICES = 1000
FORGET_EMPTY_S = 3600.0
FORECAST_RATIO_HORIZON_S = 10.0
DEFAULT_WINDOW_MS = 300_000
SCALING_HORIZON_S = 300.0
ML_STRATEGIES = ("ai-driven", "predictive", "health-score")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class MLHub:
    def __init__(self, maxine, sample_s: float | None = None, forecast_s: float | None = None,
                 max_fits: int | None = None):
        self.maxine = maxine
        self.sample_s = sample_s if sample_s is not None else _env_float("MAXINE_ML_SAMPLE_S", 1.0)
        self.forecast_s = forecast_s if forecast_s is not None else _env_float("MAXINE_ML_FORECAST_S", 5.0)
        self.cache = InferenceCache()
        self.forecaster = Forecaster(int(max_fits if max_fits is not None else _env_float("MAXINE_ML_MAX_FITS", 32)))
        # thread-confined model state (only compute() touches these)
        self.predictors: dict[str, LatencyPredictor] = {}
        self.detectors: dict[str, AnomalyDetector] = {}
        self.drifts: dict[str, DriftDetector] = {}
        self.drift_at: dict[str, float] = {}
        self.lat_series: dict[str, Series] = {}
        self.err_series: dict[str, Series] = {}
        self.load_series: dict[str, Series] = {}
        self.last_dispatches: dict[str, tuple[float, int]] = {}
        self.last_forecast = -math.inf
        # loop-side state
        self.empty_since: dict[str, float] = {}  # services that lost their last instance
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None
        self.rounds = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_round_at: float | None = None
        maxine.registry.listeners.append(self.on_change)
        for name in maxine.registry.services:
            self.empty_since.pop(name, None)

    # --- feeds (O(1), on the loop) ---------------------------------------------------
    def learn_one(self, node, latency_ms: float, success: bool, now: float) -> None:
        """Balancers observer: buffer the report for the next round."""
        extra = node.state.extra
        buf = extra.get(REPORTS_KEY)
        if buf is None:
            buf = extra[REPORTS_KEY] = deque(maxlen=256)
        buf.append((latency_ms, success, now))

    def on_change(self, change) -> None:
        """Registry listener: remember services that lost their last instance (``no_nodes``)."""
        name = change.service_name
        if change.kind == REGISTERED:
            self.empty_since.pop(name, None)
        elif change.after is None and name not in self.maxine.registry.services:
            if len(self.empty_since) >= MAX_EMPTY_SERVICES:
                self.empty_since.pop(next(iter(self.empty_since)))
            self.empty_since[name] = change.timestamp

    # --- one round ----------------------------------------------------------------------
    def snapshot(self, now: float) -> dict:
        """What the worker needs, read on the loop: {service: [node dicts]}."""
        services = {}
        for name, svc in list(self.maxine.registry.services.items())[:MAX_SERVICES]:
            nodes = []
            for inst in svc.instances.values():
                st = inst.state
                buf = st.extra.get(REPORTS_KEY)
                reports = list(buf) if buf else []
                if buf:
                    buf.clear()
                try:
                    row = node_row(st, now)
                except Exception:
                    row = None
                nodes.append({
                    "id": inst.node_id, "alive": inst.alive(now), "hbAge": now - inst.last_heartbeat,
                    "ttl": inst.ttl, "latency": st.peak_ewma(now), "error": health.error_rate(st),
                    "inFlight": st.in_flight(now), "dispatches": st.dispatches, "qps": st.qps, "cpu": st.cpu,
                    "p50": st.reported_latency_ms, "row": row, "reports": reports,
                })
            services[name] = nodes
        for name, since in list(self.empty_since.items()):
            if now - since > FORGET_EMPTY_S:
                del self.empty_since[name]
        return {"now": now, "services": services, "empty": dict(self.empty_since)}

    def compute(self, snap: dict) -> Refresh:
        """Learn, forecast, score; in the worker thread (or the caller's, in tests)."""
        with self.lock:
            return self._compute(snap)

    def _compute(self, snap: dict) -> Refresh:
        started = time.perf_counter()
        now = snap["now"]
        out = Refresh(at=now)
        seen_nodes = set()
        for service, nodes in snap["services"].items():
            predictor = self.predictors.get(service)
            if predictor is None:
                predictor = self.predictors[service] = LatencyPredictor()
            detector = self.detectors.get(service)
            if detector is None:
                detector = self.detectors[service] = AnomalyDetector()
            total_qps, dispatched = 0.0, 0.0
            for n in nodes:
                nid = n["id"]
                seen_nodes.add(nid)
                dd = self.drifts.get(nid)
                if dd is None:
                    dd = self.drifts[nid] = DriftDetector()
                row = n["row"]
                for latency, success, t in n["reports"]:
                    if dd.learn_one(latency if success else max(latency, 5.0 * (n["latency"] or latency))):
                        self.drift_at[nid] = t
                    if row is not None and success:
                        predictor.learn_one(row, latency)
                n["anomaly"] = None
                n["expected"] = None
                if row is not None and n["alive"]:
                    n["anomaly"] = detector.score_one(row)
                    detector.learn_one(row)
                    n["expected"] = predictor.predict_one(row)
                if n["latency"] is not None:
                    s = self.lat_series.get(nid)
                    if s is None:
                        s = self.lat_series[nid] = Series()
                    s.add(now, n["latency"])
                e = self.err_series.get(nid)
                if e is None:
                    e = self.err_series[nid] = Series()
                e.add(now, n["error"])
                total_qps += n["qps"] or 0.0
                prev = self.last_dispatches.get(nid)
                if prev is not None and now > prev[0]:
                    dispatched += max(0, n["dispatches"] - prev[1]) / (now - prev[0])
                self.last_dispatches[nid] = (now, n["dispatches"])
            ls = self.load_series.get(service)
            if ls is None:
                ls = self.load_series[service] = Series()
            ls.add(now, max(total_qps, dispatched))
        # forget what is gone
        for table in (self.drifts, self.drift_at, self.lat_series, self.err_series, self.last_dispatches):
            for nid in [k for k in table if k not in seen_nodes]:
                del table[nid]
        for table in (self.predictors, self.detectors, self.load_series):
            for name in [k for k in table if k not in snap["services"]]:
                del table[name]
        # forecasts (statsmodels), bounded per round
        if now - self.last_forecast >= self.forecast_s:
            self.last_forecast = now
            series = {}
            for nid, s in self.lat_series.items():
                series[(nid, "latency")] = (list(s.t), list(s.v))
            for nid, s in self.err_series.items():
                series[(nid, "error")] = (list(s.t), list(s.v))
            for name, s in self.load_series.items():
                series[(name, "load")] = (list(s.t), list(s.v))
            self.forecaster.round(series, now)
        forecasts = self.forecaster.forecasts
        out.forecasts = dict(forecasts)
        # scores, anomalies, scaling
        for service, nodes in snap["services"].items():
            lats = sorted(n["latency"] for n in nodes if n["alive"] and n["latency"] is not None)
            median = None
            if lats:
                mid = len(lats) // 2
                median = lats[mid] if len(lats) % 2 else 0.5 * (lats[mid - 1] + lats[mid])
            out.medians[service] = median
            views = []
            for n in nodes:
                nid = n["id"]
                drift_at = self.drift_at.get(nid)
                drifting = drift_at is not None and now - drift_at <= rules.DRIFT_HOLD_S
                anomaly = n["anomaly"]
                over = 0.0 if anomaly is None else max(0.0, (anomaly - rules.ANOMALY_THRESHOLD) / (1 - rules.ANOMALY_THRESHOLD))
                staleness = n["hbAge"] / n["ttl"] if n["ttl"] > 0 else 0.0
                score = health.score(n["error"], n["latency"], median, over, drifting, staleness, n["alive"])
                fc = forecasts.get((nid, "latency"))
                ratio = None
                f60 = None
                if fc is not None and n["latency"]:
                    ratio = max(fc.at(FORECAST_RATIO_HORIZON_S), 0.0) / n["latency"]
                    f60 = max(fc.at(rules.TREND_HORIZON_S), 0.0)
                out.nodes[nid] = NodeEntry(service, score, n["latency"], n["error"], anomaly, drift_at,
                                           n["expected"], ratio, staleness)
                hist = self.lat_series.get(nid)
                dd = self.drifts.get(nid)
                views.append(rules.NodeView(
                    nid, n["alive"], n["hbAge"], n["ttl"], n["latency"], n["error"], score, anomaly, drift_at,
                    dd.last_change if dd is not None else None, list(hist.v) if hist is not None else [], f60))
            out.anomalies.extend(rules.detect_service(service, views, now))
            load = self.load_series.get(service)
            load_now = load.v[-1] if load is not None and len(load) else None
            lfc = forecasts.get((service, "load"))
            load_forecast = load_now
            confidence = 0.3
            if lfc is not None and load_now is not None:
                load_forecast = max(0.0, lfc.at(SCALING_HORIZON_S))
                if lfc.slope > 0:
                    load_forecast = max(load_forecast, load_now)
                confidence = max(0.3, lfc.confidence())
            scale_nodes = [{"healthy": n["alive"] and out.nodes[n["id"]].score >= rules.UNHEALTHY_SCORE,
                            "qps": n["qps"], "cpu": n["cpu"], "p50": n["p50"], "latency": n["latency"],
                            "inFlight": n["inFlight"], "error": n["error"]} for n in nodes]
            out.scaling[service] = scaling.recommend(service, scale_nodes, load_now, load_forecast, confidence,
                                                     SCALING_HORIZON_S)
        for service, since in snap["empty"].items():
            if service not in snap["services"]:
                out.anomalies.append(rules.no_nodes(service, now - since))
        out.anomalies = rules.sort_by_severity(out.anomalies)
        out.compute_s = time.perf_counter() - started
        return out

    def install(self, refresh: Refresh) -> None:
        self.cache.install(refresh, self.maxine.registry)
        self.rounds += 1
        self.last_round_at = refresh.at
        self._publish_fallbacks()

    def refresh(self, now: float | None = None) -> Refresh:
        """One round in the calling thread (tests, tools)."""
        now = self.maxine.clock() if now is None else now
        refresh = self.compute(self.snapshot(now))
        self.install(refresh)
        return refresh

    async def run(self, maxine=None) -> None:
        """Background job (``maxine.background``): a round every ``sample_s``, computed off the loop."""
        loop = asyncio.get_running_loop()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maxine-ml")
        try:
            while True:
                await asyncio.sleep(self.sample_s)
                try:
                    snap = self.snapshot(self.maxine.clock())
                    refresh = await loop.run_in_executor(self.executor, self.compute, snap)
                    self.install(refresh)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    log.exception("ML round failed; the cache keeps its last values")
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)

    # --- reads (hooks) ----------------------------------------------------------------------
    def _strategies(self):
        bal = getattr(self.maxine, "balancers", None)
        for name in ML_STRATEGIES:
            s = bal.get(name) if bal is not None else None
            if s is not None:
                yield s

    def fallback_count(self) -> int:
        return sum(int(getattr(s, "fallbacks", 0) or 0) for s in self._strategies())

    def _publish_fallbacks(self) -> None:
        # maxine.fallbacks counts discoveries answered by a fallback; the advanced-ml
        # strategy keeps its own count, which is added when present
        total = self.fallback_count()
        bal = getattr(self.maxine, "balancers", None)
        other = bal.get("advanced-ml") if bal is not None else None
        if other is not None:
            total += int(getattr(other, "fallbacks", 0) or 0)
        self.maxine.fallbacks = total

    def health_scores(self, service: str) -> dict | None:
        """{nodeId: score} for the live nodes of ``service`` (cached; computed now for nodes not yet cached)."""
        registry = self.maxine.registry
        live = registry.live_instances(service)
        if not live:
            return None
        now = self.maxine.clock()
        median = health.service_latency(live, now)
        out = {}
        for inst in sorted(live, key=lambda i: i.node_id):
            entry = self.cache.node(inst.node_id)
            out[inst.node_id] = entry.score if entry is not None else health.node_score(inst, now, median)
        return out

    def predict_health(self, service: str, window_ms: int = DEFAULT_WINDOW_MS):
        live = self.maxine.registry.live_instances(service)
        if not live:
            return 404, {"error": f"Unknown service: {service[:200]}"}
        now = self.maxine.clock()
        window_s = window_ms / 1000.0
        cur = self.cache.current
        forecasts = cur.forecasts if cur is not None else {}
        median = (cur.medians.get(service) if cur is not None else None) or health.service_latency(live, now)
        preds = {}
        for inst in sorted(live, key=lambda i: i.node_id):
            nid = inst.node_id
            st = inst.state
            entry = self.cache.node(nid)
            latency = entry.latency_ms if entry is not None else st.peak_ewma(now)
            error = entry.error if entry is not None else health.error_rate(st)
            current = entry.score if entry is not None else health.node_score(inst, now, median)
            fc = forecasts.get((nid, "latency"))
            efc = forecasts.get((nid, "error"))
            ahead = (now - fc.fitted_at) + window_s if fc is not None else window_s
            p_lat = max(fc.at(ahead), 0.0) if fc is not None else latency
            p_err = min(max(efc.at(ahead), 0.0), 1.0) if efc is not None else error
            drifting = entry is not None and entry.drift_at is not None and now - entry.drift_at <= rules.DRIFT_HOLD_S
            anomaly = entry.anomaly if entry is not None else None
            over = 0.0 if anomaly is None else max(0.0, (anomaly - rules.ANOMALY_THRESHOLD) / (1 - rules.ANOMALY_THRESHOLD))
            predicted = health.score(p_err, p_lat, median, over, drifting, 0.0, True)
            preds[nid] = {
                "currentScore": current, "predictedScore": predicted,
                "trend": round(fc.slope, 6) if fc is not None else 0.0,
                "predictedResponseTime": None if p_lat is None else round(p_lat, 3),
                "currentResponseTime": None if latency is None else round(latency, 3),
                "predictedErrorRate": round(p_err, 6),
                "confidence": fc.confidence() if fc is not None else 0.0,
                "method": fc.method if fc is not None else "current",
                "expectedResponseTime": None if entry is None or entry.expected_ms is None else round(entry.expected_ms, 3),
            }
        return 200, {"serviceName": service, "predictions": preds, "predictionWindow": window_ms,
                     "trendUnit": "ms per second"}

    def anomalies(self, service: str | None = None):
        cur = self.cache.current
        items = list(cur.anomalies) if cur is not None else []
        if service is not None:
            items = [a for a in items if a.get("serviceName") == service]
        return 200, {"anomalies": items, "updatedAt": None if cur is None else cur.at * 1000.0}

    def scaling(self, service: str):
        cur = self.cache.current
        recs = cur.scaling.get(service) if cur is not None else None
        if recs is None:
            if not self.maxine.registry.live_instances(service) and service not in self.empty_since:
                return 404, {"error": f"Unknown service: {service[:200]}"}
            recs = scaling.recommend(service, [], None, None, 0.0, SCALING_HORIZON_S)
            if service in self.empty_since:
                recs = [{**recs[0], "action": "scale_up", "reason": "No registered instances",
                         "confidence": 0.9, "recommendedInstances": 1}]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.maxine.clock())) + "Z"
        return 200, {"serviceName": service, "recommendations": recs, "timestamp": stamp}

    def models_status(self) -> list[dict]:
        now = self.maxine.clock()
        cache_age = self.cache.age(now)
        fresh = None if self.last_round_at is None else max(0.0, now - self.last_round_at)
        rows_p = sum(p.n for p in list(self.predictors.values()))
        rows_d = sum(d.n for d in list(self.detectors.values()))
        common = {"version": f"features-v{FEATURE_VERSION}", "trainedAt": self.last_round_at,
                  "freshnessSeconds": fresh, "cacheAgeSeconds": cache_age}
        out = [
            {"name": "latency-predictor", "kind": LatencyPredictor.kind, **common, "trainingRows": rows_p,
             "services": len(self.predictors), "lastError": self.last_error},
            {"name": "anomaly-detector", "kind": AnomalyDetector.kind, **common, "trainingRows": rows_d,
             "services": len(self.detectors), "lastError": self.last_error},
            {"name": "drift-detector", "kind": DriftDetector.kind, **common,
             "trainingRows": sum(d.n for d in list(self.drifts.values())), "nodes": len(self.drifts),
             "detections": sum(d.detections for d in list(self.drifts.values())), "lastError": None},
            {"name": "forecaster", "kind": "statsmodels Holt (damped), per node latency/error and service load",
             **common, "trainingRows": len(self.forecaster.forecasts), "fits": self.forecaster.fits,
             "lastRoundMs": round(self.forecaster.last_round_s * 1000.0, 3), "lastError": self.forecaster.last_error},
        ]
        for s in self._strategies():
            try:
                st = dict(s.status())
            except Exception as exc:
                st = {"name": getattr(s, "name", "?"), "lastError": f"{type(exc).__name__}: {exc}"[:300]}
            st.setdefault("version", "online")
            st["freshnessSeconds"] = 0.0
            st["cacheAgeSeconds"] = cache_age
            out.append(st)
        return out


def install(maxine) -> MLHub:
    """Create the hub for ``maxine``: observer, listener, background job and hooks."""
    hub = getattr(maxine, "ml", None)
    if isinstance(hub, MLHub):
        return hub
    hub = maxine.ml = MLHub(maxine)
    maxine.balancers.observers.append(hub)
    if os.environ.get("MAXINE_ML", "on").lower() not in ("off", "0", "false"):
        maxine.background.append(hub.run)
    # the hooks observability and the dashboard read with getattr
    for name, fn in (("predict_health", hub.predict_health), ("anomalies", hub.anomalies),
                     ("health_scores", hub.health_scores), ("models_status", lambda: models_status(maxine))):
        if getattr(maxine, name, None) is None:
            setattr(maxine, name, fn)
    if getattr(maxine, "fallbacks", None) is None:
        maxine.fallbacks = 0
    return hub


def models_status(maxine) -> list[dict]:
    """The hub's models plus the advanced-ml strategy's, if it exposes a status (never fails)."""
    out = []
    hub = getattr(maxine, "ml", None)
    if hub is not None:
        try:
            out.extend(hub.models_status())
        except Exception as exc:
            out.append({"name": "ml-hub", "lastError": f"{type(exc).__name__}: {exc}"[:300]})
    bal = getattr(maxine, "balancers", None)
    other = bal.get("advanced-ml") if bal is not None else None
    status = getattr(other, "status", None)
    if callable(status):
        try:
            s = status()
            if isinstance(s, dict):
                out.append({"name": "advanced-ml", **s})
        except Exception as exc:
            out.append({"name": "advanced-ml", "lastError": f"{type(exc).__name__}: {exc}"[:300],
                        "fallbackActive": True})
    return out
