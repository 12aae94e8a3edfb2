"""Prometheus metrics, the dashboard's data, and the hooks models plug into.

Only two tiny things run per request, both updated in place by the discovery
path: :class:`LatencyHistogram` (fixed buckets of plain ints) and a per-node
``{strategy: count}`` dict in ``NodeState.extra`` (counted by ``Maxine.discover``).
Everything else is read at scrape time by :class:`MaxineCollector` from the
plain counters the server already keeps, or sampled every few seconds in the
background by :meth:`Observability.sample`, so the cost of observability does
not grow with traffic.

Label cardinality is bounded: no counter carries a node id; the ``service``
label of ``maxine_discoveries_total`` takes at most ``MAX_SERVICE_LABELS``
values (the busiest services when first seen) and the rest is reported as
``service="other"``.

Model hooks (filled in by the learned-routing work; absent means "no model
yet", never an error). Each is looked up on the :class:`Maxine` object with
``getattr``; an exception from it is logged and treated as "absent":

- ``models_status() -> list[dict]``: one dict per model with any of ``name``,
  ``kind``, ``version``, ``trainedAt`` (epoch s), ``freshnessSeconds``,
  ``cacheAgeSeconds``, ``fallbacks`` (count), ``fallbackActive`` (bool),
  ``lastError``. Without it, ``models() -> (200, {"models": [...]})`` is used.
- ``predict_health(service, window_ms) -> (200, payload)`` with the
  ``/predict-health`` shape ``{"predictions": {nodeId: {"predictedScore",
  "confidence", optionally "lower"/"upper"}}}``.
- ``anomalies(service=None) -> (200, {"anomalies": [...]})``, the ``/anomalies`` shape.
- ``health_scores(service) -> {nodeId: 0-100}``: used instead of :func:`health_score`.
- ``fallbacks``: an int attribute counting discoveries answered by a fallback.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from bisect import bisect_right
from collections import deque

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ..models import health
from ..registry import REGISTERED

log = logging.getLogger("maxine.observability")

BY_STRATEGY = "dispatchesByStrategy"  # key in NodeState.extra: {strategy: dispatches}
MAX_SERVICE_LABELS = 50
MAX_MODEL_LABELS = 50
OTHER = "other"
SAMPLE_INTERVAL_S = 2.0
HISTORY_POINTS = 180  # 6 minutes at the default interval
MAX_TRACKED_NODES = 500  # per-node history is kept for at most this many instances
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# --- the two hot-path pieces ------------------------------------------------------
class LatencyHistogram:
    """A fixed-bucket histogram of plain ints, cheap enough for the discovery path.

    The fast path times one discovery in ``SAMPLE`` and calls :meth:`observe` with
    it (a bisect and two adds): timing every one, two clock reads and the bucket,
    cost an eighth of a round-robin discovery's instructions. ``untimed`` counts
    down the discoveries to answer before timing the next one.
    """

    __slots__ = ("bounds", "counts", "total", "untimed")
    SAMPLE = 16
    BOUNDS = (5e-6, 1e-5, 2e-5, 3e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1)

    def __init__(self, bounds=BOUNDS):
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last bucket is +Inf
        self.total = [0.0]
        self.untimed = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_right(self.bounds, seconds)] += 1
        self.total[0] += seconds

    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, n in zip(self.bounds + [math.inf], self.counts):
            running += n
            out.append(("+Inf" if bound == math.inf else repr(bound), running))
        return out

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the ``q`` quantile (None when empty)."""
        n = self.count()
        if not n:
            return None
        running = 0
        for bound, c in zip(self.bounds, self.counts):
            running += c
            if running >= q * n:
                return bound
        return self.bounds[-1]


# --- health score ----------------------------------------------------------------------
# The dashboard's score when the ML hub has none cached: the hub's own formula.
health_score = health.node_score


# --- model hooks -------------------------------------------------------------------------
def _call_hook(maxine, name: str, *args):
    hook = getattr(maxine, name, None)
    if not callable(hook):
        return None
    try:
        return hook(*args)
    except Exception:
        log.exception("observability hook %s failed; treating it as absent", name)
        return None


def _payload(result, key: str):
    """Unwrap an operations-style ``(status, payload)`` result to ``payload[key]``."""
    if isinstance(result, tuple) and len(result) == 2:
        if result[0] != 200 or not isinstance(result[1], dict):
            return None
        return result[1].get(key)
    if isinstance(result, dict) and key in result:
        return result[key]
    return result


def models_status(maxine) -> list[dict]:
    """The models' status through the hooks, or [] ("no model yet")."""
    result = _call_hook(maxine, "models_status")
    if result is None:
        result = _payload(_call_hook(maxine, "models"), "models")
    if isinstance(result, dict):
        result = [{"name": k, **v} if isinstance(v, dict) else {"name": k} for k, v in result.items()]
    return [m for m in result if isinstance(m, dict)] if isinstance(result, list) else []


def open_anomalies(maxine) -> list[dict] | None:
    """Open anomalies through the hook; None while there is no detector."""
    result = _payload(_call_hook(maxine, "anomalies"), "anomalies")
    return [a for a in result if isinstance(a, dict)] if isinstance(result, list) else None


def learned_scores(maxine, service: str) -> dict:
    """{nodeId: 0-100} from the ``health_scores(service)`` hook, or {} (then the
    dashboard uses :func:`health_score`)."""
    result = _payload(_call_hook(maxine, "health_scores", service), "scores")
    if not isinstance(result, dict):
        return {}
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def predictions(maxine, service: str, window_ms: int = 300_000) -> dict | None:
    """{nodeId: {"predictedScore", "lower", "upper", ...}} through the hook, or None."""
    preds = _payload(_call_hook(maxine, "predict_health", service, window_ms), "predictions")
    if not isinstance(preds, dict):
        return None
    out = {}
    for node_id, p in preds.items():
        if not isinstance(p, dict) or not isinstance(p.get("predictedScore"), (int, float)):
            continue
        score = float(p["predictedScore"])
        conf = p.get("confidence")
        width = 50.0 * (1.0 - min(max(float(conf), 0.0), 1.0)) if isinstance(conf, (int, float)) else 10.0
        lower, upper = p.get("lower", score - width), p.get("upper", score + width)
        out[node_id] = {**p, "predictedScore": score,
                        "lower": max(0.0, float(lower)), "upper": min(100.0, float(upper))}
    return out


# --- persistence and events, read from whatever exists -----------------------------------------
def _persistence(maxine) -> dict[str, tuple[int, bool | None]]:
    """{backend: (errors, healthy)}: a store on ``maxine.store`` / ``maxine.persistence``
    with ``kind``, ``errors`` (int) and ``healthy`` (bool), plus ``maxine.persistence_errors``."""
    out: dict[str, tuple[int, bool | None]] = {}
    for attr in ("store", "persistence_store", "persistence"):
        store = getattr(maxine, attr, None)
        if store is None or isinstance(store, (str, bytes, int, float, dict, list, tuple)):
            continue
        kind = str(getattr(store, "kind", None) or maxine.settings.persistence)
        errors = getattr(store, "errors", 0)
        healthy = getattr(store, "healthy", None)
        out[kind] = (errors if isinstance(errors, int) and not isinstance(errors, bool) else 0,
                     healthy if isinstance(healthy, bool) else None)
    kind = maxine.settings.persistence
    extra = getattr(maxine, "persistence_errors", None)
    if isinstance(extra, int) and not isinstance(extra, bool):
        errors, healthy = out.get(kind, (0, None))
        out[kind] = (errors + extra, healthy)
    out.setdefault(kind, (0, None))
    return out


def _events_published(maxine) -> int:
    for attr in ("events", "event_hub", "hub"):
        hub = getattr(maxine, attr, None)
        value = getattr(hub, "published", None) if hub is not None else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


# --- state ---------------------------------------------------------------------------------
class NodeHistory:
    """A node's recent samples for the dashboard's charts (bounded deques)."""

    __slots__ = ("service", "t", "score", "pred", "lo", "hi", "in_flight", "latency", "share",
                 "last_counts", "seen")

    def __init__(self, service: str):
        self.service = service
        self.t = deque(maxlen=HISTORY_POINTS)
        self.score = deque(maxlen=HISTORY_POINTS)
        self.pred = deque(maxlen=HISTORY_POINTS)
        self.lo = deque(maxlen=HISTORY_POINTS)
        self.hi = deque(maxlen=HISTORY_POINTS)
        self.in_flight = deque(maxlen=HISTORY_POINTS)
        self.latency = deque(maxlen=HISTORY_POINTS)
        self.share: dict[str, deque] = {}  # strategy -> dispatches in each interval
        self.last_counts: dict[str, int] = {}
        self.seen = 0.0

    def to_json(self) -> dict:
        return {"service": self.service, "t": list(self.t), "score": list(self.score),
                "predicted": list(self.pred), "lower": list(self.lo), "upper": list(self.hi),
                "inFlight": list(self.in_flight), "latencyMs": list(self.latency),
                "dispatches": {s: list(v) for s, v in self.share.items()}}


class Observability:
    """What observability keeps about one server; attached as ``maxine.observability``."""

    def __init__(self, maxine, interval: float = SAMPLE_INTERVAL_S):
        self.maxine = maxine
        self.interval = interval
        self.retired: dict[tuple[str, str], int] = {}  # (service label, strategy) -> picks of gone nodes
        self.service_labels: set[str] = set()
        self.history: dict[str, NodeHistory] = {}
        self.tracked: dict[str, object] = {}  # node_id -> Instance: the nodes sampled for the dashboard
        self.short = True  # tracked lost nodes since the last top-up
        self.last_sample = 0.0
        maxine.registry.listeners.append(self.on_change)
        self.prometheus = CollectorRegistry(auto_describe=False)
        self.prometheus.register(MaxineCollector(self))
        for collector in (ProcessCollector, PlatformCollector):
            try:
                collector(registry=self.prometheus)
            except Exception:  # not every platform has /proc
                log.debug("%s unavailable", collector.__name__)

    def on_change(self, change) -> None:
        """Registry listener, O(1): keep the sampled nodes up to date, and fold a
        departing node's picks into ``retired`` so ``maxine_discoveries_total``
        never goes backwards."""
        if change.kind == REGISTERED:
            self._track(change.instance)
        elif change.after is None:  # deregistered or expired
            if self.tracked.pop(change.node_id, None) is not None:
                self.short = True
            by = change.instance.state.extra.get(BY_STRATEGY)
            if by:
                labels = self.service_labels
                if change.service_name not in labels and len(labels) < MAX_SERVICE_LABELS:
                    labels.add(change.service_name)
                label = change.service_name if change.service_name in labels else OTHER
                for strategy, n in by.items():
                    key = (label, strategy)
                    self.retired[key] = self.retired.get(key, 0) + n

    def discoveries(self) -> dict[tuple[str, str], int]:
        """Discoveries by (service label, strategy)."""
        per_service: dict[str, dict[str, int]] = {}
        for inst in list(self.maxine.registry.nodes.values()):
            by = inst.state.extra.get(BY_STRATEGY)
            if by:
                acc = per_service.setdefault(inst.service_name, {})
                for strategy, n in list(by.items()):
                    acc[strategy] = acc.get(strategy, 0) + n
        free = MAX_SERVICE_LABELS - len(self.service_labels)
        if free > 0:
            new = sorted((s for s in per_service if s not in self.service_labels),
                         key=lambda s: -sum(per_service[s].values()))
            self.service_labels.update(new[:free])
        out = dict(self.retired)
        for service, by in per_service.items():
            label = service if service in self.service_labels else OTHER
            for strategy, n in by.items():
                out[(label, strategy)] = out.get((label, strategy), 0) + n
        return out

    def exposition(self) -> bytes:
        return generate_latest(self.prometheus)

    # --- sampling for the dashboard -------------------------------------------------------
    def _track(self, inst) -> None:
        if len(self.tracked) < MAX_TRACKED_NODES:
            self.tracked[inst.node_id] = inst

    def _top_up(self) -> None:
        """Refill the tracked set after departures: a look at no more than
        ``MAX_TRACKED_NODES`` + the free places, however big the registry is."""
        free = MAX_TRACKED_NODES - len(self.tracked)
        for looked, (node_id, inst) in enumerate(self.maxine.registry.nodes.items()):
            if free <= 0 or looked >= 2 * MAX_TRACKED_NODES:
                break
            if node_id not in self.tracked:
                self.tracked[node_id] = inst
                free -= 1
        self.short = False

    def sample(self, now: float | None = None) -> None:
        """Append one point per tracked node: health, prediction, load, picks by strategy."""
        for _ in self._sample_steps(now):
            pass

    def _sample_steps(self, now: float | None):
        """:meth:`sample`, yielding after each service so the event loop can serve
        requests in between. The tracked nodes (at most ``MAX_TRACKED_NODES``, the
        earliest registered) are kept up to date by registry events, so a sample
        costs the same with 100 or 100,000 instances registered."""
        maxine = self.maxine
        registry = maxine.registry
        now = maxine.clock() if now is None else now
        self.last_sample = now
        stamp = round(now * 1000.0)
        if self.short:
            self._top_up()
        by_service: dict[str, list] = {}
        for inst in self.tracked.values():
            if inst.alive(now):
                by_service.setdefault(inst.service_name, []).append(inst)
        for name in sorted(by_service):
            median = health.service_latency(registry.live_instances(name), now)
            preds = predictions(maxine, name) or {}
            scores = learned_scores(maxine, name)
            for inst in by_service[name]:
                self._append_point(inst, name, now, stamp, median, preds.get(inst.node_id), scores.get(inst.node_id))
            yield
        for node_id in [n for n, h in self.history.items() if n not in registry.nodes or h.seen < now - 60.0]:
            del self.history[node_id]

    def _append_point(self, inst, service: str, now: float, stamp: int, median, p, score) -> None:
        h = self.history.get(inst.node_id)
        if h is None:
            h = self.history[inst.node_id] = NodeHistory(service)
        state = inst.state
        h.t.append(stamp)
        h.score.append(round(score, 2) if score is not None else health_score(inst, now, median))
        h.pred.append(None if p is None else round(p["predictedScore"], 2))
        h.lo.append(None if p is None else round(p["lower"], 2))
        h.hi.append(None if p is None else round(p["upper"], 2))
        h.in_flight.append(state.in_flight(now))
        lat = state.peak_ewma(now)
        h.latency.append(None if lat is None else round(lat, 3))
        counts = dict(state.extra.get(BY_STRATEGY) or {})
        for strategy in counts.keys() | h.share.keys():
            series = h.share.get(strategy)
            if series is None:
                series = h.share[strategy] = deque([0] * (len(h.t) - 1), maxlen=HISTORY_POINTS)
            series.append(max(0, counts.get(strategy, 0) - h.last_counts.get(strategy, 0)))
        h.last_counts = counts
        h.seen = now

    async def run_sampler(self, maxine=None) -> None:
        """Background job (``maxine.background``): sample every ``interval`` seconds."""
        while True:
            try:
                for _ in self._sample_steps(None):
                    await asyncio.sleep(0)
            except Exception:
                log.exception("dashboard sampling failed; retrying next tick")
            await asyncio.sleep(self.interval)

    def dashboard_data(self) -> dict:
        maxine = self.maxine
        registry = maxine.registry
        now = maxine.clock()
        services = []
        learned = False
        for name in sorted(registry.services):
            live = registry.live_instances(name)
            if not live:
                continue
            median = health.service_latency(live, now)
            scores = learned_scores(maxine, name)
            learned = learned or bool(scores)
            instances = []
            for inst in sorted(live, key=lambda i: i.node_id):
                state = inst.state
                instances.append({
                    "nodeId": inst.node_id, "address": inst.address, "version": inst.version,
                    "healthy": inst.alive(now),
                    "healthScore": round(scores[inst.node_id], 2) if inst.node_id in scores
                    else health_score(inst, now, median),
                    "inFlight": state.in_flight(now), "latencyEwmaMs": state.peak_ewma(now),
                    "lastLatencyMs": state.last_latency_ms, "errorRate": round(state.error_ewma, 4),
                    "dispatches": state.dispatches, "results": state.results, "failures": state.failures,
                    "byStrategy": dict(state.extra.get(BY_STRATEGY) or {}),
                    "lastHeartbeatAgoS": round(now - inst.last_heartbeat, 3), "ttl": inst.ttl,
                })
            services.append({"name": name, "instances": instances})
        models = models_status(maxine)
        anomalies = open_anomalies(maxine)
        hist = getattr(maxine, "discover_latency", None)
        n = hist.count() if hist is not None else 0
        return {
            "now": now * 1000.0,
            "uptime": now - maxine.started,
            "interval": self.interval,
            "totals": {
                "requests": maxine.requests, "errors": maxine.errors,
                "services": len(registry.services), "instances": len(registry.nodes),
                **registry.counters,
                "discoveries": sum(maxine.discoveries.values()),
                "discoveriesByStrategy": dict(sorted(maxine.discoveries.items())),
                "callEdges": len(maxine.calls.edges),
                "eventsPublished": _events_published(maxine),
            },
            "discoveryLatency": None if not n else {
                "count": n, "meanUs": hist.total[0] / n * 1e6,
                "p50UpperUs": hist.quantile(0.5) * 1e6, "p99UpperUs": hist.quantile(0.99) * 1e6},
            "services": services,
            "healthScoreSource": "model" if learned else "telemetry",
            "history": {node_id: h.to_json() for node_id, h in self.history.items()},
            "models": models,
            "modelStatus": "ok" if models else "no model yet",
            "anomalies": anomalies or [],
            "anomalyDetector": anomalies is not None,
        }


# --- Prometheus ------------------------------------------------------------------------------------
def _counter(name: str, doc: str, value) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class MaxineCollector:
    """Reads the server's plain counters at scrape time; nothing is updated per request."""

    def __init__(self, obs: Observability):
        self.obs = obs

    def collect(self):
        maxine = self.obs.maxine
        registry = maxine.registry
        yield _gauge("maxine_uptime_seconds", "Seconds since the server started.", maxine.clock() - maxine.started)
        yield _counter("maxine_http_requests", "HTTP requests received.", maxine.requests)
        yield _counter("maxine_http_errors", "HTTP responses with a status of 400 or more.", maxine.errors)
        counters = registry.counters
        for key, doc in (("registrations", "Registrations (including lease refreshes by re-registering)."),
                         ("deregistrations", "Explicit deregistrations."),
                         ("expiries", "Instances removed because their lease passed."),
                         ("heartbeats", "Accepted heartbeats.")):
            yield _counter(f"maxine_{key}", doc, counters.get(key, 0))

        disc = CounterMetricFamily("maxine_discoveries",
                                   f"Successful discoveries by service (at most {MAX_SERVICE_LABELS} services, "
                                   "the rest as 'other') and strategy.", labels=["service", "strategy"])
        for (service, strategy), n in sorted(self.obs.discoveries().items()):
            disc.add_metric([service, strategy], n)
        yield disc
        hist = getattr(maxine, "discover_latency", None)
        if hist is not None:
            h = HistogramMetricFamily("maxine_discovery_latency_seconds",
                                      f"Server-side time to answer /discover on the fast path, "
                                      f"sampled: one discovery in {hist.SAMPLE} is timed.")
            h.add_metric([], hist.cumulative(), sum_value=hist.total[0])
            yield h

        yield _gauge("maxine_services", "Services with at least one registered instance.", len(registry.services))
        yield _gauge("maxine_instances", "Registered instances.", len(registry.nodes))
        yield _gauge("maxine_call_edges", "Distinct caller -> called edges recorded through /record-call.",
                     len(maxine.calls.edges))
        yield _counter("maxine_call_edges_dropped", "Call edges refused because the graph is full.",
                       maxine.calls.dropped)
        yield _counter("maxine_events_published", "Change events published.", _events_published(maxine))

        stores = _persistence(maxine)
        errors = CounterMetricFamily("maxine_persistence_errors", "Persistence (file, Redis) errors by backend.",
                                     labels=["backend"])
        healthy = GaugeMetricFamily("maxine_persistence_healthy", "1 while the persistence backend works.",
                                    labels=["backend"])
        for backend, (n, ok) in sorted(stores.items()):
            errors.add_metric([backend], n)
            if ok is not None:
                healthy.add_metric([backend], 1.0 if ok else 0.0)
        yield errors
        yield healthy

        models = models_status(maxine)[:MAX_MODEL_LABELS]
        fresh = GaugeMetricFamily("maxine_model_freshness_seconds", "Seconds since the model was trained.",
                                  labels=["model"])
        cache = GaugeMetricFamily("maxine_inference_cache_age_seconds", "Age of the model's cached scores.",
                                  labels=["model"])
        fallbacks = CounterMetricFamily("maxine_model_fallbacks", "Decisions that fell back from the model.",
                                        labels=["model"])
        active = GaugeMetricFamily("maxine_model_fallback_active",
                                   "1 while the model is bypassed (missing, stale or failing).", labels=["model"])
        for m in models:
            name = str(m.get("name") or m.get("kind") or "model")[:100]
            freshness = m.get("freshnessSeconds")
            trained = m.get("trainedAt")
            if freshness is None and isinstance(trained, (int, float)):
                freshness = max(0.0, time.time() - (trained / 1000.0 if trained > 1e11 else trained))
            if isinstance(freshness, (int, float)):
                fresh.add_metric([name], freshness)
            if isinstance(m.get("cacheAgeSeconds"), (int, float)):
                cache.add_metric([name], m["cacheAgeSeconds"])
            if isinstance(m.get("fallbacks"), (int, float)):
                fallbacks.add_metric([name], m["fallbacks"])
            if "fallbackActive" in m:
                active.add_metric([name], 1.0 if m["fallbackActive"] else 0.0)
        yield _gauge("maxine_models", "Models loaded (0: no model yet).", len(models))
        yield from (fresh, cache, fallbacks, active)
        total = getattr(maxine, "fallbacks", 0)
        yield _counter("maxine_fallbacks", "Discoveries answered by a fallback strategy.",
                       total if isinstance(total, int) and not isinstance(total, bool) else 0)

        anomalies = open_anomalies(maxine) or []
        kinds: dict[str, int] = {}
        for a in anomalies:
            kind = str(a.get("type", "unknown"))[:64]
            kinds[kind] = kinds.get(kind, 0) + 1
        by_type = GaugeMetricFamily("maxine_open_anomalies_by_type", "Open anomalies by type.", labels=["type"])
        for kind, n in sorted(kinds.items())[:50]:
            by_type.add_metric([kind], n)
        yield _gauge("maxine_open_anomalies", "Open anomalies (0 while there is no detector).", len(anomalies))
        yield by_type


def attach(maxine, interval: float = SAMPLE_INTERVAL_S) -> Observability:
    """The server's :class:`Observability`, created on first use."""
    obs = getattr(maxine, "observability", None)
    if obs is None:
        obs = maxine.observability = Observability(maxine, interval)
    return obs
