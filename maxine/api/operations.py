"""What each endpoint does, independent of the HTTP layer serving it.

The raw ASGI fast path and the FastAPI routes both call these methods, so
every endpoint has exactly one implementation. Each returns ``(status,
payload)``; the payload is a dict, or ready-made JSON bytes on the hot path.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson

from ..balancers import Balancers, PickContext
from ..registry import CallGraph, Pool, Registry
from ..registry.encoding import dumps_kept
from ..settings import Settings
from . import validation
from .observability import BY_STRATEGY, LatencyHistogram
from .asgi import peer as asgi_peer
from .validation import Invalid

SERVICE_UNAVAILABLE = orjson.dumps({"message": "Service unavailable"})
SUCCESS = orjson.dumps({"success": True})  # the answer of most writes, encoded once
QUERY_CACHE_SIZE = 4096


@dataclass(slots=True)
class DiscoverQuery:
    """A parsed discovery query string, cached with its strategy object, pick
    context and, until the service changes, its pool."""

    service: str
    strategy_name: str
    strategy: object
    version: str | None
    tags: tuple
    client_id: str | None
    ctx: PickContext
    keyed: bool  # the strategy reads the client's identity (hash rings)
    pool: Pool | None = None  # the last pool answered; fetched again once stale


def error(status: int, message: str, **extra) -> tuple[int, dict]:
    return status, {"error": message, **extra}


def invalid(exc: Invalid) -> tuple[int, dict]:
    return 400, {"error": "Validation failed", "details": exc.details}


class Maxine:
    """The state of one server: registry, strategies, telemetry, counters."""

    def __init__(self, settings: Settings | None = None, registry: Registry | None = None,
                 clock=time.time, rng: random.Random | None = None):
        self.settings = settings or Settings()
        self.clock = clock
        self.registry = registry or Registry(self.settings.heartbeat_timeout, clock, self.settings.dispatch_ttl)
        self.balancers = Balancers(self.settings.strategies.split(",") if self.settings.strategies else None)
        self.calls = CallGraph()
        self.rng = rng or random.Random()
        self.started = clock()
        self.discoveries: dict[str, int] = {}
        self.requests = 0
        self.errors = 0
        self.discover_latency = LatencyHistogram()  # updated inline by the fast path
        self.background: list = []  # coroutine functions run for the app's lifetime
        self.events = None   # EventHub (maxine.persistence.install)
        self.store = None    # FileStore / RedisStore when persistence is not memory
        self.sweeper = None  # lease sweeper with self-preservation
        self._queries: dict[bytes, DiscoverQuery | tuple[int, dict]] = {}
        self.recorder = None  # TelemetryRecorder when --telemetry-log is on (maxine.telemetry_recorder)

    # --- discovery (hot path) ----------------------------------------------
    def parse_discover(self, query_string: bytes) -> DiscoverQuery | tuple[int, dict]:
        cached = self._queries.get(query_string)
        if cached is not None:
            return cached
        try:
            params = dict(parse_qsl(query_string.decode("utf-8", "strict"), keep_blank_values=True))
        except UnicodeDecodeError:
            return error(400, "Query string must be UTF-8")
        parsed = self._parse_discover(params)
        if len(self._queries) >= QUERY_CACHE_SIZE:
            self._queries.clear()
        self._queries[query_string] = parsed
        return parsed

    def _parse_discover(self, params: dict) -> DiscoverQuery | tuple[int, dict]:
        name = params.get("serviceName")
        if not name:
            return error(400, "Missing serviceName")
        if validation.service_name(name) is None:
            return error(400, "Invalid serviceName: 1-100 characters of letters, digits, '.', '_' or '-'")
        strategy = params.get("loadBalancing") or self.balancers.default
        if self.balancers.get(strategy) is None:
            return error(400, f"Unknown loadBalancing strategy: {strategy[:100]!r}",
                         validStrategies=self.balancers.names())
        problems: list[str] = []
        lat = validation.query_float(params, "lat", -90.0, 90.0, problems)
        lon = validation.query_float(params, "lon", -180.0, 180.0, problems)
        version = params.get("version") or None
        tags = tuple(sorted({t for t in (params.get("tags") or "").split(",") if t}))
        for key, value in (("version", version), ("clientId", params.get("clientId")),
                           ("zone", params.get("zone")), ("region", params.get("region"))):
            if value is not None and (len(value) > 256 or not value.isprintable()):
                problems.append(f"{key}: at most 256 printable characters")
        if len(tags) > 10 or any(len(t) > 50 for t in tags):
            problems.append("tags: at most 10 comma-separated tags of at most 50 characters")
        if problems:
            return 400, {"error": "Validation failed", "details": problems}
        ctx = PickContext(0.0, self.rng, None, None, lat, lon, params.get("zone") or None,
                          params.get("region") or None)
        picker = self.balancers.get(strategy)
        return DiscoverQuery(name, strategy, picker, version, tags, params.get("clientId") or None, ctx,
                             bool(getattr(picker, "keyed", False)))

    def discover(self, query_string: bytes, scope=None, peer=asgi_peer) -> tuple[int, bytes | dict]:
        """Pick an instance. ``peer(scope)`` gives the caller's address and
        ``X-Client-Id`` header (from an ASGI scope by default), read only by
        strategies keyed on them."""
        query = self._queries.get(query_string) or self.parse_discover(query_string)
        if type(query) is tuple:
            return query
        registry = self.registry
        strategy = query.strategy
        now = self.clock()
        ctx = query.ctx  # one context per distinct query string: no allocation per request
        ctx.now = now
        if query.keyed:
            ip, client_id = peer(scope) if scope is not None else (None, None)
            ctx.client_ip = ip
            ctx.client_key = query.client_id or client_id or ip
        pool = query.pool
        if pool is None or pool.stale:
            pool = query.pool = registry.pool(query.service, query.version, query.tags)
        if pool is None or not pool.nodes:
            return 404, SERVICE_UNAVAILABLE
        node = strategy.pick(pool, ctx)
        if now >= node.deadline:
            # Its lease passed and the sweeper has not acted yet: never serve it, but leave
            # the expiry to the sweeper (self-preservation, grace, one decider across replicas).
            # The rebuilt pool holds only live instances.
            registry.drop_pools(query.service)
            pool = query.pool = registry.pool(query.service, query.version, query.tags)
            if not pool:
                return 404, SERVICE_UNAVAILABLE
            node = strategy.pick(pool, ctx)
        name = query.strategy_name
        if self.recorder is not None:
            self.recorder.discovery(now, node, name)
        state = node.state
        state.on_dispatch(now)
        self.discoveries[name] = self.discoveries.get(name, 0) + 1
        by = state.extra.get(BY_STRATEGY)  # per-node picks by strategy, for the dashboard and metrics
        if by is None:
            by = state.extra[BY_STRATEGY] = {}
        by[name] = by.get(name, 0) + 1
        body = node._bodies.get(name)
        if body is None:
            body = node._bodies[name] = dumps_kept({
                "nodeId": node.node_id, "serviceName": node.service_name, "address": node.address,
                "host": node.host, "port": node.port, "metadata": node.metadata, "healthy": True,
                "strategy": name,
            })
        return 200, body

    # --- writes ------------------------------------------------------------------
    def write_blocked(self) -> tuple[int, dict] | None:
        """503 while the shared store cannot take writes (Redis down)."""
        store = self.store
        if store is not None and not store.writable:
            return 503, {"error": store.unavailable_message(), "retryable": True}
        return None

    def _write(self, apply) -> tuple[int, dict]:
        """Run a registry write unless the shared store refuses writes (503)."""
        blocked = self.write_blocked()
        if blocked is not None:
            return blocked
        result = apply()
        if result[0] == 200 and self.store is not None and not self.store.writable:
            return 503, {"error": self.store.unavailable_message(), "retryable": True}  # failed during this write
        return result

    def register(self, body) -> tuple[int, dict]:
        def apply():
            try:
                fields = validation.register(body)
            except Invalid as exc:
                return invalid(exc)
            inst = self.registry.register(fields["service_name"], fields["host"], fields["port"],
                                          fields["metadata"], fields["ttl"])
            return 200, {"nodeId": inst.node_id, "status": "registered", "ttl": inst.ttl}
        return self._write(apply)

    def heartbeat(self, body) -> tuple[int, dict | bytes]:
        try:
            node_id, load = validation.heartbeat(body)
        except Invalid as exc:
            return invalid(exc)
        inst = self.registry.heartbeat(node_id, load)
        if inst is None:
            return 404, {"success": False, "error": f"Unknown nodeId: {node_id}"}
        if load and self.recorder is not None:
            self.recorder.load_report(inst.last_heartbeat, inst)
        return 200, SUCCESS

    def deregister(self, body) -> tuple[int, dict]:
        def apply():
            try:
                node_id = validation.deregister(body)
            except Invalid as exc:
                return invalid(exc)
            return 200, {"success": True, "removed": self.registry.deregister(node_id)}
        return self._write(apply)

    def record_response_time(self, body) -> tuple[int, dict | bytes]:
        try:
            node_id, latency_ms, success = validation.response_time(body)
        except Invalid as exc:
            return invalid(exc)
        node = self.registry.get(node_id)
        if node is None:
            return 404, {"success": False, "error": f"Unknown nodeId: {node_id}"}
        self._apply_report(node, latency_ms, success, self.clock(), self.balancers.learn_one)
        return 200, SUCCESS

    def _apply_report(self, node, latency_ms: float, success: bool, now: float, learn) -> None:
        """One report's effects: the node's telemetry, the learning strategies (``learn``:
        ``balancers.learn_one``, or ``balancers.note_one`` within a batch), the telemetry log."""
        node.state.on_result(latency_ms, success, now)
        learn(node, latency_ms, success, now)
        if self.recorder is not None:
            self.recorder.result(now, node, latency_ms, success)

    def record_response_times(self, body) -> tuple[int, dict]:
        """A batch of reports, applied in order as ``record_response_time`` would apply
        each, with one batched model pass at the end (no pick can run in between, so
        each node's score is the one its last report would leave). All or nothing when
        a report is malformed; reports for unknown nodes are skipped and named."""
        try:
            reports = validation.response_times(body)
        except Invalid as exc:
            return invalid(exc)
        now = self.clock()
        registry, note = self.registry, self.balancers.note_one
        unknown = []
        for node_id, latency_ms, success in reports:
            node = registry.get(node_id)
            if node is None:
                unknown.append(node_id)
                continue
            self._apply_report(node, latency_ms, success, now, note)
        self.balancers.settle(now)
        return 200, {"success": True, "recorded": len(reports) - len(unknown), "unknownNodeIds": unknown[:100]}

    def record_call(self, body) -> tuple[int, dict | bytes]:
        try:
            caller, called = validation.call_edge(body)
        except Invalid as exc:
            return invalid(exc)
        if not self.calls.record(caller, called, self.clock()):
            return error(429, "Call graph is full; edge not recorded")
        if self.recorder is not None:
            self.recorder.call(self.clock(), caller, called)
        return 200, SUCCESS

    # --- reads -------------------------------------------------------------------
    def servers(self) -> tuple[int, dict]:
        return 200, {"services": sorted(self.registry.services)}

    def service(self, name: str) -> tuple[int, dict]:
        svc = self.registry.service(name)
        live = self.registry.live_instances(name)
        if svc is None or not live:
            return error(404, f"Unknown service: {name[:200]}")
        now = self.clock()
        return 200, {"serviceName": name, "index": svc.index,
                     "instances": [self._instance_view(i, now) for i in sorted(live, key=lambda i: i.node_id)]}

    def _instance_view(self, inst, now: float) -> dict:
        view = inst.describe(now)
        view["nodeName"] = inst.node_id
        view["load"] = inst.state.snapshot(now)
        return view

    def node_health(self, node_id: str) -> tuple[int, dict]:
        inst = self.registry.get(node_id)
        if inst is None:
            return error(404, f"Unknown nodeId: {node_id[:600]}")
        now = self.clock()
        view = self._instance_view(inst, now)
        view["timeSinceLastHeartbeat"] = (now - inst.last_heartbeat) * 1000.0
        view["responseTime"] = inst.state.peak_ewma(now)
        return 200, view

    def health(self) -> tuple[int, dict]:
        payload = {"status": "ok", "services": len(self.registry.services), "nodes": len(self.registry.nodes),
                   "uptime": self.clock() - self.started, "persistence": self.settings.persistence}
        if self.store is not None:
            payload["store"] = store = self.store.status()
            if not store["healthy"]:
                payload["status"] = "degraded"
        if self.sweeper is not None:
            payload["selfPreservation"] = self.sweeper.status()
            if self.sweeper.active:
                payload["status"] = "degraded"
        return 200, payload

    def versions(self, name: str | None) -> tuple[int, dict]:
        if not name:
            return error(400, "Missing serviceName")
        if validation.service_name(name) is None:
            return error(400, "Invalid serviceName")
        if not self.registry.live_instances(name):
            return error(404, f"Unknown service: {name}")
        return 200, {"serviceName": name, "versions": self.registry.versions(name)}

    def metrics(self) -> tuple[int, dict]:
        registry = self.registry
        return 200, {
            "uptime": self.clock() - self.started,
            "requests": self.requests,
            "errors": self.errors,
            "services": len(registry.services),
            "nodes": len(registry.nodes),
            **registry.counters,
            "discoveries": dict(sorted(self.discoveries.items())),
            "callEdges": len(self.calls.edges),
            "persistenceType": self.settings.persistence,
            "selfPreservationActive": bool(self.sweeper and self.sweeper.active),
            "selfPreservationActivations": self.sweeper.activations if self.sweeper else 0,
            "events": self.events.published if self.events else 0,
            "eventSubscribers": len(self.events.subscribers) if self.events else 0,
        }
