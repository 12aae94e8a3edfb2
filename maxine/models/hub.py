"""The ML state of one server: online learners, forecasts, the inference cache.

Data flow (nothing here runs per discovery), with a cost per round that is
bounded by settings and independent of the registry's size:

- **reports** — the hub is an observer in ``maxine.balancers.observers``, so
  ``/record-response-time`` calls :meth:`MLHub.learn_one`: it appends the
  latency to a short list in ``NodeState.extra`` (at most ``REPORTS_KEPT``
  between rounds) and, on the first report since the last visit, queues the
  node as dirty (O(1), ~0.2 µs). Heartbeats' load reports are in ``NodeState``.
- **every ``ml_sample_s``** (background job): the round picks services to
  visit — those with dirty nodes first, then round-robin over every service —
  until ``ml_max_nodes`` instances are covered. :meth:`snapshot` reads those
  services' nodes on the event loop in chunks (yielding between them); only
  nodes with telemetry get a feature row. :meth:`compute` runs in one worker
  thread: ADWIN and series only for nodes with telemetry (at most
  ``ml_max_tracked``, least recently reported forgotten), ONE Half-Space
  Trees detector and ONE latency predictor for the whole server (not one
  per service: a detector is ~320 KB and ~20 ms to build), at most ``ml_max_learn``
  rows a round, at most ``ml_max_fits`` statsmodels fits a round;
  :meth:`install` merges the visited services' results into the
  :class:`~maxine.models.cache.InferenceCache` on the loop. River and
  statsmodels objects are only ever touched by that thread.
- **trained models** — when ``models/anomaly`` and ``models/forecast`` hold a
  promoted artifact (torch-trained, numpy-served; :mod:`.anomaly_model`,
  :mod:`.forecast_model`), each round scores the visited nodes with them in one
  batched forward each, in the worker thread: the autoencoder's reconstruction
  score becomes the ``learned_anomaly`` type in ``/anomalies``, and the latency
  forecast ``horizon_s`` ahead answers ``/predict-health`` for windows up to that
  horizon (Holt beyond it, or without an artifact). The stores reload on
  ``watch_models`` and ``POST /models/reload`` like ``advanced-ml``'s.
- **reads** — ``/health-score``, ``/predict-health``, ``/anomalies``,
  ``/scaling/recommendations``, ``/models``, the dashboard and Prometheus read
  the cache; the strategies read ``NodeState.extra``.

A node with no telemetry costs nothing but its visits (a few µs each, bounded
per round); a service with nothing to report stores nothing.

Settings (``maxine.settings``): ``ml`` (MAXINE_ML), ``ml_sample_s``,
``ml_forecast_s``, ``ml_max_fits``, ``ml_max_nodes``, ``ml_max_learn``,
``ml_max_tracked``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor

from ..registry import REGISTERED
from ..settings import Settings
from . import anomalies as rules
from . import anomaly_model, forecast_model, health, scaling
from .artifacts import ModelStore
from .cache import InferenceCache, NodeEntry, Refresh
from .features import FEATURE_VERSION, node_row
from .forecast import Forecaster, Series
from .online import AnomalyDetector, DriftDetector, LatencyPredictor

log = logging.getLogger("maxine.ml")

REPORTS_KEY = "ml.reports"
REPORTS_KEPT = 32             # reports kept per node between two visits (the latest are dropped past this)
PREDICTOR_ROWS_PER_NODE = 3   # latency-predictor rows per node visit
MAX_EMPTY_SERVICES = 1000
FORGET_EMPTY_S = 3600.0
FORGET_NODE_S = 600.0         # per-node model state of a node not reported for this long is dropped
SNAPSHOT_CHUNK = 256          # nodes read on the loop between two yields
FORECAST_RATIO_HORIZON_S = 10.0
DEFAULT_WINDOW_MS = 300_000
SCALING_HORIZON_S = 300.0
ML_STRATEGIES = ("ai-driven", "predictive", "health-score")


def let_the_loop_run() -> None:
    """Called by the worker thread between two units of a round's work (a service, a
    learned row, a fit). Releasing the GIL here hands it at once to the event loop
    if it is waiting; otherwise the loop waits out the interpreter's 5 ms switch
    interval while the round computes (round-robin's p99 was twice as long at 100
    nodes with telemetry: docs/performance-history.md, "Eighth session")."""
    time.sleep(0)


class NodeTrack:
    """Per-node model state, only for nodes with telemetry (worker thread)."""

    __slots__ = ("service", "drift", "drift_at", "lat", "err", "anomaly", "expected", "seen", "rows",
                 "learned_anomaly", "learned_forecast")

    def __init__(self, service: str):
        self.service = service
        self.drift = DriftDetector()
        self.drift_at: float | None = None
        self.lat = Series()
        self.err: Series | None = None  # created on the first non-zero error rate
        self.anomaly: float | None = None
        self.expected: float | None = None
        self.seen = 0.0
        self.rows: forecast_model.RowHistory | None = None  # recent feature rows, while a forecast model is loaded
        self.learned_anomaly: float | None = None  # reconstruction error / threshold (> 1: anomalous)
        self.learned_forecast: float | None = None  # latency (ms) the forecast model expects horizon_s ahead


def _scale_node(n: dict) -> dict:
    return {"healthy": n["alive"] and n.get("score", 0.0) >= rules.UNHEALTHY_SCORE, "qps": n["qps"], "cpu": n["cpu"],
            "p50": n["p50"], "latency": n["latency"], "inFlight": n["inFlight"], "error": n["error"]}


class MLHub:
    def __init__(self, maxine, sample_s: float | None = None, forecast_s: float | None = None,
                 max_fits: int | None = None, settings: Settings | None = None, models_root=None):
        self.maxine = maxine
        s = settings or getattr(maxine, "settings", None) or Settings()
        self.sample_s = float(sample_s if sample_s is not None else s.ml_sample_s)
        self.max_nodes = max(1, int(s.ml_max_nodes))
        self.max_learn = max(0, int(s.ml_max_learn))
        self.max_tracked = max(1, int(s.ml_max_tracked))
        self.cache = InferenceCache()
        self.forecaster = Forecaster(int(max_fits if max_fits is not None else s.ml_max_fits),
                                     float(forecast_s if forecast_s is not None else s.ml_forecast_s))
        # thread-confined model state (only compute() touches these)
        self.predictor = LatencyPredictor()
        self.detector = AnomalyDetector()
        # trained models (numpy-served artifacts); reloaded by watch_models / POST /models/reload
        self.stores = {name: ModelStore(models_root, name) for name in (anomaly_model.MODEL, forecast_model.MODEL)}
        self.tracks: OrderedDict[str, NodeTrack] = OrderedDict()  # least recently reported first
        self.load_series: OrderedDict[str, Series] = OrderedDict()
        self.last_dispatches: dict[str, tuple[float, int]] = {}   # service -> (time, Σ dispatches)
        # loop-side state
        self.dirty: deque = deque()            # nodes with reports since their last visit
        self.rotation: deque = deque()         # every service, round-robin
        self.in_rotation: set = set()
        self.removed: list = []                # node ids removed since the last round (for the worker)
        self.empty_since: dict[str, float] = {}  # services that lost their last instance
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None
        self.rounds = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_round_at: float | None = None
        self.last_visited = 0
        maxine.registry.listeners.append(self.on_change)
        for name in maxine.registry.services:
            self._rotate_in(name)

    # compatibility: the forecast interval lives on the forecaster
    @property
    def forecast_s(self) -> float:
        return self.forecaster.every_s

    @forecast_s.setter
    def forecast_s(self, value: float) -> None:
        self.forecaster.every_s = value

    # --- feeds (O(1), on the loop) ---------------------------------------------------
    def learn_one(self, node, latency_ms: float, success: bool, now: float) -> None:
        """Balancers observer: keep the report for the node's next visit."""
        extra = node.state.extra
        buf = extra.get(REPORTS_KEY)
        if buf is None:
            extra[REPORTS_KEY] = [latency_ms if success else -1.0 - latency_ms]
            self.dirty.append(node)
        elif len(buf) < REPORTS_KEPT:
            buf.append(latency_ms if success else -1.0 - latency_ms)

    def _rotate_in(self, name: str) -> None:
        if name not in self.in_rotation:
            self.in_rotation.add(name)
            self.rotation.append(name)

    def on_change(self, change) -> None:
        """Registry listener: keep the rotation, forget removed nodes, remember emptied services."""
        name = change.service_name
        if change.kind == REGISTERED:
            self.empty_since.pop(name, None)
            self._rotate_in(name)
        elif change.after is None:
            if change.node_id in self.cache.nodes:
                self.cache.forget_node(change.node_id)
                self.removed.append(change.node_id)
            if name not in self.maxine.registry.services:
                self.cache.forget_service(name)
                if len(self.empty_since) >= MAX_EMPTY_SERVICES:
                    self.empty_since.pop(next(iter(self.empty_since)))
                self.empty_since[name] = change.timestamp

    # --- one round ----------------------------------------------------------------------
    def _choose(self) -> list:
        """The services to visit this round: dirty first, then round-robin, ≤ max_nodes instances."""
        services = self.maxine.registry.services
        budget = self.max_nodes
        chosen, out = set(), []
        dirty = self.dirty
        while dirty and budget > 0:
            node = dirty.popleft()
            name = node.service_name
            if name in chosen:
                continue
            svc = services.get(name)
            if svc is None or svc.instances.get(node.node_id) is not node:
                continue
            chosen.add(name)
            out.append(svc)
            budget -= len(svc.instances)
        rotation = self.rotation
        if not rotation and services:
            for name in services:
                self._rotate_in(name)
        k = len(rotation)
        while budget > 0 and k > 0:
            k -= 1
            name = rotation.popleft()
            svc = services.get(name)
            if svc is None:
                self.in_rotation.discard(name)
                continue
            rotation.append(name)
            if name in chosen:
                continue
            chosen.add(name)
            out.append(svc)
            budget -= len(svc.instances)
        return out

    def _snapshot_steps(self, now: float, out: dict):
        """Build the snapshot in ``out``; yields every SNAPSHOT_CHUNK nodes (the async caller sleeps(0))."""
        services = []
        count = 0
        for svc in self._choose():
            nodes = []
            for inst in list(svc.instances.values()):
                st = inst.state
                alive = inst.alive(now)
                n = {"id": inst.node_id, "alive": alive, "hbAge": now - inst.last_heartbeat, "ttl": inst.ttl,
                     "dispatches": st.dispatches, "qps": st.qps, "cpu": st.cpu, "p50": st.reported_latency_ms,
                     "error": health.error_rate(st), "latency": st.peak_ewma(now), "row": None, "reports": None,
                     "inFlight": st.in_flight(now)}
                reports = st.extra.pop(REPORTS_KEY, None)
                if reports is not None or st.results or st.report_time is not None or st.ewma_ms is not None:
                    n["reports"] = reports or ()
                    try:
                        n["row"] = node_row(st, now)
                    except Exception:
                        n["row"] = None
                    n["tracked"] = True
                nodes.append(n)
                count += 1
                if count % SNAPSHOT_CHUNK == 0:
                    yield
            services.append((svc.name, nodes))
        for name, since in list(self.empty_since.items()):
            if now - since > FORGET_EMPTY_S:
                del self.empty_since[name]
        removed, self.removed = self.removed, []
        out.update({"now": now, "services": services, "empty": dict(self.empty_since), "removed": removed})

    def snapshot(self, now: float) -> dict:
        """What the worker needs, read on the loop (bounded by ``ml_max_nodes``)."""
        out: dict = {}
        for _ in self._snapshot_steps(now, out):
            pass
        return out

    async def snapshot_async(self, now: float) -> dict:
        out: dict = {}
        for _ in self._snapshot_steps(now, out):
            await asyncio.sleep(0)
        return out

    def compute(self, snap: dict) -> Refresh:
        """Learn, forecast, score; in the worker thread (or the caller's, in tests)."""
        with self.lock:
            return self._compute(snap)

    def _track(self, nid: str, service: str, now: float) -> NodeTrack:
        tracks = self.tracks
        tr = tracks.get(nid)
        if tr is None:
            tr = tracks[nid] = NodeTrack(service)
        else:
            tracks.move_to_end(nid)
        tr.seen = now
        return tr

    def _forget(self, nid: str, out: Refresh) -> None:
        if self.tracks.pop(nid, None) is not None:
            for key in ((nid, "latency"), (nid, "error")):
                if self.forecaster.discard(key):
                    out.dropped_forecasts.append(key)

    def _series_of(self, key):
        name, kind = key
        if kind == "load":
            s = self.load_series.get(name)
        else:
            tr = self.tracks.get(name)
            s = None if tr is None else (tr.lat if kind == "latency" else tr.err)
        if s is None or len(s) < 2:
            return None
        return s.t, s.v

    def _score_learned(self, snap: dict, now: float) -> None:
        tracked = [n for _, nodes in snap["services"] for n in nodes if n.get("track") is not None]
        anomaly = self.stores[anomaly_model.MODEL].ensure_loaded()
        forecast = self.stores[forecast_model.MODEL].ensure_loaded()
        scores = anomaly_model.score_many(anomaly, [n["row"] for n in tracked]) if anomaly and tracked else None
        inputs, owners = [], []
        for k, n in enumerate(tracked):
            tr = n["track"]
            tr.learned_anomaly = None if scores is None else float(scores[k])
            tr.learned_forecast = None
            if forecast is None:
                tr.rows = None
                continue
            if tr.rows is None:
                tr.rows = forecast_model.RowHistory()
            lagged = tr.rows.lagged_input(now, n["row"])
            tr.rows.add(now, n["row"])
            if lagged is not None:
                inputs.append(lagged)
                owners.append(tr)
        if inputs:
            for tr, value in zip(owners, forecast_model.predict_many(forecast, inputs)):
                tr.learned_forecast = float(value)

    def _compute(self, snap: dict) -> Refresh:
        started = time.perf_counter()
        now = snap["now"]
        out = Refresh(at=now)
        for nid in snap.get("removed", ()):
            self._forget(nid, out)
        learn_left = self.max_learn
        detector, predictor = self.detector, self.predictor
        forecaster = self.forecaster
        for service, nodes in snap["services"]:
            let_the_loop_run()
            # --- per-node models, only for nodes with telemetry
            tracked = []
            for n in nodes:
                if n["row"] is None:
                    continue
                tr = self._track(n["id"], service, now)
                n["track"] = tr
                tracked.append(n)
                dd = tr.drift
                fallback = 5.0 * (n["latency"] or 1.0)
                for x in n["reports"]:
                    lat = x if x >= 0.0 else max(-1.0 - x, fallback)
                    if dd.learn_one(lat):
                        tr.drift_at = now
                if n["latency"] is not None:
                    if len(tr.lat) == 0:
                        forecaster.add((n["id"], "latency"))
                    tr.lat.add(now, n["latency"])
                if tr.err is None and n["error"] > 0.0:
                    tr.err = Series()
                    forecaster.add((n["id"], "error"))
                if tr.err is not None:
                    tr.err.add(now, n["error"])
            # --- river: one detector and one predictor for the server, bounded rows per round
            if tracked and learn_left > 0:
                batch = tracked[:learn_left]
                learn_left -= len(batch)
                for n in batch:
                    let_the_loop_run()
                    tr = n["track"]
                    row = n["row"]
                    if n["alive"]:
                        tr.anomaly = detector.score_one(row)
                        detector.learn_one(row)
                    good = [x for x in n["reports"] if x >= 0.0]
                    for latency in good[-PREDICTOR_ROWS_PER_NODE:]:
                        predictor.learn_one(row, latency)
                    tr.expected = predictor.predict_one(row)
            # --- service load (only services with any)
            total_qps = sum(n["qps"] or 0.0 for n in nodes)
            total_disp = sum(n["dispatches"] for n in nodes)
            dispatched = 0.0
            prev = self.last_dispatches.get(service)
            if prev is not None and now > prev[0]:
                dispatched = max(0, total_disp - prev[1]) / (now - prev[0])
            if total_disp:
                self.last_dispatches[service] = (now, total_disp)
            load_now = max(total_qps, dispatched)
            ls = self.load_series.get(service)
            if ls is None and (load_now > 0.0 or total_disp):
                ls = self.load_series[service] = Series()
                forecaster.add((service, "load"))
            if ls is not None:
                self.load_series.move_to_end(service)
                ls.add(now, load_now)
        # --- forget: nodes not reported for long, beyond the cap; idle load series
        tracks = self.tracks
        while tracks:
            nid, tr = next(iter(tracks.items()))
            if len(tracks) > self.max_tracked or now - tr.seen > FORGET_NODE_S:
                self._forget(nid, out)
            else:
                break
        while len(self.load_series) > self.max_tracked:
            name = next(iter(self.load_series))
            del self.load_series[name]
            self.last_dispatches.pop(name, None)
            if forecaster.discard((name, "load")):
                out.dropped_forecasts.append((name, "load"))
        if len(self.last_dispatches) > 4 * self.max_tracked:
            for name in list(self.last_dispatches)[: len(self.last_dispatches) - 4 * self.max_tracked]:
                del self.last_dispatches[name]
        # --- forecasts (statsmodels): at most max_fits a round
        out.forecasts = forecaster.round(self._series_of, now, between=let_the_loop_run)
        forecasts = forecaster.forecasts
        # --- trained models: one batched forward each over the visited nodes with telemetry
        self._score_learned(snap, now)
        # --- scores, anomalies, scaling for the visited services
        for service, nodes in snap["services"]:
            let_the_loop_run()
            out.visited.append(service)
            median = health.median([n["latency"] for n in nodes if n["alive"] and n["latency"] is not None])
            if median is not None:
                out.medians[service] = median
            views = []
            has_data = False
            for n in nodes:
                nid = n["id"]
                tr = n.get("track")
                staleness = n["hbAge"] / n["ttl"] if n["ttl"] > 0 else 0.0
                if tr is None:
                    score = health.score(n["error"], n["latency"], median, 0.0, False, staleness, n["alive"])
                    n["score"] = score
                    views.append(rules.NodeView(nid, n["alive"], n["hbAge"], n["ttl"], n["latency"], n["error"],
                                                score))
                    continue
                has_data = True
                drift_at = tr.drift_at
                drifting = drift_at is not None and now - drift_at <= rules.DRIFT_HOLD_S
                anomaly = tr.anomaly
                over = 0.0 if anomaly is None else max(0.0, (anomaly - rules.ANOMALY_THRESHOLD) / (1 - rules.ANOMALY_THRESHOLD))
                score = health.score(n["error"], n["latency"], median, over, drifting, staleness, n["alive"])
                n["score"] = score
                fc = forecasts.get((nid, "latency"))
                ratio = f60 = None
                if fc is not None and n["latency"]:
                    ratio = max(fc.at(FORECAST_RATIO_HORIZON_S), 0.0) / n["latency"]
                    f60 = max(fc.at(rules.TREND_HORIZON_S), 0.0)
                out.nodes[nid] = NodeEntry(service, score, n["latency"], n["error"], anomaly, drift_at,
                                           tr.expected, ratio, staleness, tr.learned_anomaly, tr.learned_forecast)
                views.append(rules.NodeView(
                    nid, n["alive"], n["hbAge"], n["ttl"], n["latency"], n["error"], score, anomaly, drift_at,
                    tr.drift.last_change, tr.lat.v if len(tr.lat) else [], f60, tr.learned_anomaly))
            found = rules.detect_service(service, views, now)
            if found:
                out.anomalies[service] = rules.sort_by_severity(found)
            load = self.load_series.get(service)
            if not has_data and load is None:
                continue  # nothing learned about this service: /scaling computes its answer on demand
            load_now = load.last() if load is not None else None
            lfc = forecasts.get((service, "load"))
            load_forecast = load_now
            confidence = 0.3
            if lfc is not None and load_now is not None:
                load_forecast = max(0.0, lfc.at(SCALING_HORIZON_S))
                if lfc.slope > 0:
                    load_forecast = max(load_forecast, load_now)
                confidence = max(0.3, lfc.confidence())
            out.scaling[service] = scaling.recommend(service, [_scale_node(n) for n in nodes], load_now,
                                                     load_forecast, confidence, SCALING_HORIZON_S)
        out.empty = [rules.no_nodes(service, now - since) for service, since in snap["empty"].items()]
        out.compute_s = time.perf_counter() - started
        return out

    def install(self, refresh: Refresh) -> None:
        self.cache.install(refresh, self.maxine.registry)
        self.rounds += 1
        self.last_round_at = refresh.at
        self.last_visited = len(refresh.visited)
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
                    snap = await self.snapshot_async(self.maxine.clock())
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
        median = self.cache.medians.get(service) or health.service_latency(live, now)
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
        forecasts = self.cache.forecasts
        median = self.cache.medians.get(service) or health.service_latency(live, now)
        learned_model = self.stores[forecast_model.MODEL].current
        horizon = forecast_model.horizon_of(learned_model) if learned_model is not None else 0.0
        learned_confidence = forecast_model.confidence_of(learned_model) if learned_model is not None else 0.0
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
            trend = round(fc.slope, 6) if fc is not None else 0.0
            confidence = fc.confidence() if fc is not None else 0.0
            method = fc.method if fc is not None else "current"
            learned = entry.learned_forecast_ms if entry is not None else None
            if learned is not None and learned_model is not None and window_s <= horizon:
                p_lat = forecast_model.at(latency, learned, horizon, window_s)
                trend = round((learned - (latency or 0.0)) / horizon, 6)
                confidence, method = learned_confidence, "learned"
            predicted = health.score(p_err, p_lat, median, over, drifting, 0.0, True)
            preds[nid] = {
                "currentScore": current, "predictedScore": predicted,
                "trend": trend,
                "predictedResponseTime": None if p_lat is None else round(p_lat, 3),
                "currentResponseTime": None if latency is None else round(latency, 3),
                "predictedErrorRate": round(p_err, 6),
                "confidence": confidence,
                "method": method,
                "expectedResponseTime": None if entry is None or entry.expected_ms is None else round(entry.expected_ms, 3),
            }
        return 200, {"serviceName": service, "predictions": preds, "predictionWindow": window_ms,
                     "trendUnit": "ms per second"}

    def anomalies(self, service: str | None = None):
        cache = self.cache
        if service is not None:
            items = list(cache.anomalies.get(service, ()))
            items.extend(a for a in cache.empty if a.get("serviceName") == service)
        else:
            items = cache.all_anomalies()
        return 200, {"anomalies": rules.sort_by_severity(items),
                     "updatedAt": None if cache.at is None else cache.at * 1000.0}

    def scaling(self, service: str):
        recs = self.cache.scaling.get(service)
        if recs is None:
            live = self.maxine.registry.live_instances(service)
            if not live and service not in self.empty_since:
                return 404, {"error": f"Unknown service: {service[:200]}"}
            now = self.maxine.clock()
            nodes = [{"healthy": True, "qps": i.state.qps, "cpu": i.state.cpu, "p50": i.state.reported_latency_ms,
                      "latency": i.state.peak_ewma(now), "inFlight": i.state.in_flight(now),
                      "error": health.error_rate(i.state)} for i in live[:10_000]]
            recs = scaling.recommend(service, nodes, None, None, 0.0, SCALING_HORIZON_S)
            if service in self.empty_since:
                recs = [{**recs[0], "action": "scale_up", "reason": "No registered instances",
                         "confidence": 0.9, "recommendedInstances": 1}]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.maxine.clock())) + "Z"
        return 200, {"serviceName": service, "recommendations": recs, "timestamp": stamp}

    def models_status(self) -> list[dict]:
        now = self.maxine.clock()
        cache_age = self.cache.age(now)
        fresh = None if self.last_round_at is None else max(0.0, now - self.last_round_at)
        common = {"version": f"features-v{FEATURE_VERSION}", "trainedAt": self.last_round_at,
                  "freshnessSeconds": fresh, "cacheAgeSeconds": cache_age}
        tracks = list(self.tracks.values())
        out = [
            {"name": "latency-predictor", "kind": LatencyPredictor.kind + ", one per server", **common,
             "trainingRows": self.predictor.n, "maeLog": None if self.predictor.mae is None else round(self.predictor.mae, 4),
             "lastError": self.last_error or self.predictor.last_error},
            {"name": "anomaly-detector", "kind": AnomalyDetector.kind + ", one per server",
             **common, "trainingRows": self.detector.n, "warm": self.detector.n >= self.detector.warmup,
             "lastError": self.last_error or self.detector.last_error},
            {"name": "drift-detector", "kind": DriftDetector.kind + ", nodes with telemetry", **common,
             "trainingRows": sum(t.drift.n for t in tracks), "nodes": len(tracks),
             "detections": sum(t.drift.detections for t in tracks), "lastError": None},
            {"name": "forecaster", "kind": "statsmodels Holt (damped), per node latency/error and service load",
             **common, "trainingRows": len(self.forecaster.forecasts), "fits": self.forecaster.fits,
             "series": len(self.forecaster.keys), "maxFitsPerRound": self.forecaster.max_fits,
             "lastRoundMs": round(self.forecaster.last_round_s * 1000.0, 3), "lastError": self.forecaster.last_error},
        ]
        for name, store in self.stores.items():
            st = store.status()
            st["fallbackActive"] = store.current is None
            st["fallback"] = {"anomaly": "anomaly-detector (river Half-Space Trees) only",
                              "forecast": "forecaster (statsmodels Holt)"}[name]
            st["cacheAgeSeconds"] = cache_age
            out.append(st)
        cur = self.cache.current
        out[0]["lastRoundComputeMs"] = None if cur is None else round(cur.compute_s * 1000.0, 3)
        out[0]["servicesVisitedLastRound"] = self.last_visited
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


def install(maxine, models_root=None) -> MLHub:
    """Create the hub for ``maxine``: observer, listener, background job and hooks; its trained
    models come from ``models_root`` (default: ``$MAXINE_MODELS_DIR`` or the checkout's ``models/``)."""
    hub = getattr(maxine, "ml", None)
    if isinstance(hub, MLHub):
        return hub
    hub = maxine.ml = MLHub(maxine, models_root=models_root)
    maxine.balancers.observers += (hub,)
    settings = getattr(maxine, "settings", None)
    if settings is None or getattr(settings, "ml", True):
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
