"""Prometheus metrics: the exposition parsed with prometheus-client's own parser,
bounded label cardinality, counters that never go backwards, and model hooks
that are optional and can never break a scrape."""

from __future__ import annotations

from functools import partial

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ManualClock
from maxine.api import create_app
from maxine.api import observability as obs_mod
from maxine.api.observability import LatencyHistogram, attach, health_score
from maxine.api.operations import Maxine
from maxine.settings import Settings


def parse(text: str) -> dict[str, list]:
    """{family name: [(sample name, labels, value), ...]}"""
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = (family.type, [(s.name, s.labels, s.value) for s in family.samples])
    return families


def value(families, family, sample=None, **labels):
    for name, sample_labels, v in families[family][1]:
        if (sample is None or name == sample) and all(sample_labels.get(k) == x for k, x in labels.items()):
            return v
    raise KeyError((family, sample, labels))


Clock = partial(ManualClock, 1_000_000.0)


def server_state(clock=None) -> tuple[Maxine, object]:
    maxine = Maxine(Settings(), clock=clock or Clock())
    create_app(maxine=maxine)  # wires the observability routes and listener
    return maxine, maxine.observability


def register(maxine, service, port, **metadata):
    status, body = maxine.register({"serviceName": service, "host": "10.0.0.1", "port": port, "metadata": metadata})
    assert status == 200, body
    return body["nodeId"]


def discover(maxine, service, strategy="round-robin", n=1):
    for _ in range(n):
        status, _ = maxine.discover(f"serviceName={service}&loadBalancing={strategy}".encode())
        assert status == 200


# --- against a real server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def populated(server):
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        ids = [http.post("/register", json={"serviceName": "metrics-svc", "host": "10.1.0.1", "port": p}).json()["nodeId"]
               for p in (1, 2, 3)]
        for node_id in ids:
            assert http.post("/heartbeat", json={"nodeId": node_id, "inFlight": 1}).status_code == 200
        for i in range(30):
            strategy = "round-robin" if i % 3 else "least-connections"
            assert http.get("/discover", params={"serviceName": "metrics-svc", "loadBalancing": strategy}).status_code == 200
        assert http.get("/discover", params={"serviceName": "no-such-svc"}).status_code == 404
        assert http.request("DELETE", "/deregister", json={"nodeId": ids[2]}).json()["removed"] is True
        http.post("/record-call", json={"callerService": "web", "calledService": "metrics-svc"})
        yield http


def test_exposition_parses_and_has_every_metric(populated):
    response = populated.get("/metrics/prometheus")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = parse(response.text)
    for name in ("maxine_registrations", "maxine_deregistrations", "maxine_expiries", "maxine_heartbeats",
                 "maxine_discoveries", "maxine_discovery_latency_seconds", "maxine_services", "maxine_instances",
                 "maxine_events_published", "maxine_persistence_errors", "maxine_model_freshness_seconds",
                 "maxine_inference_cache_age_seconds", "maxine_model_fallbacks", "maxine_fallbacks",
                 "maxine_open_anomalies", "maxine_models", "maxine_http_requests", "maxine_uptime_seconds"):
        assert name in families, name
    assert families["maxine_discoveries"][0] == "counter"
    assert families["maxine_discovery_latency_seconds"][0] == "histogram"
    assert value(families, "maxine_registrations") >= 3
    assert value(families, "maxine_deregistrations") >= 1
    assert value(families, "maxine_heartbeats") >= 3
    # the deregistered node's picks still count
    assert value(families, "maxine_discoveries", service="metrics-svc", strategy="round-robin") == 20
    assert value(families, "maxine_discoveries", service="metrics-svc", strategy="least-connections") == 10
    # 31 discoveries, the first and then one in LatencyHistogram.SAMPLE timed
    timed = -(-31 // LatencyHistogram.SAMPLE)
    assert value(families, "maxine_discovery_latency_seconds", "maxine_discovery_latency_seconds_count") == timed
    assert value(families, "maxine_discovery_latency_seconds", "maxine_discovery_latency_seconds_bucket", le="+Inf") == timed
    assert value(families, "maxine_instances") >= 2
    models = populated.get("/models")
    expected = len(models.json()["models"]) if models.status_code == 200 else 0  # no model yet: 0, not an error
    assert value(families, "maxine_models") == expected
    assert value(families, "maxine_open_anomalies") >= 0


def test_no_node_id_labels(populated):
    families = parse(populated.get("/metrics/prometheus").text)
    for name, (_, samples) in families.items():
        for _, labels, _ in samples:
            assert "nodeId" not in labels and "node" not in labels, name
            assert not any("10.1.0.1" in v for v in labels.values()), name


def test_json_metrics_still_served(populated):
    body = populated.get("/metrics").json()
    assert body["discoveries"]["round-robin"] >= 20


# --- in process ------------------------------------------------------------------------------
def test_discoveries_counter_is_monotonic_across_deregistration_and_expiry():
    clock = Clock()
    maxine, obs = server_state(clock)
    a = register(maxine, "svc", 1)
    register(maxine, "svc", 2)
    discover(maxine, "svc", n=10)
    before = obs.discoveries()[("svc", "round-robin")]
    assert before == 10
    maxine.deregister({"nodeId": a})
    assert obs.discoveries()[("svc", "round-robin")] == 10
    clock.t += 3600  # everything expires
    maxine.registry.sweep()
    assert not maxine.registry.nodes
    assert obs.discoveries()[("svc", "round-robin")] == 10
    register(maxine, "svc", 1)
    discover(maxine, "svc", n=2)
    assert obs.discoveries()[("svc", "round-robin")] == 12


def test_service_label_cardinality_is_capped(monkeypatch):
    monkeypatch.setattr(obs_mod, "MAX_SERVICE_LABELS", 5)
    maxine, obs = server_state()
    for i in range(20):
        register(maxine, f"svc{i:02d}", 1)
        discover(maxine, f"svc{i:02d}", n=20 - i)  # svc00 busiest
    counts = obs.discoveries()
    services = {s for s, _ in counts}
    assert len(services) == 6 and "other" in services
    assert {"svc00", "svc01", "svc02", "svc03", "svc04"} <= services
    assert sum(counts.values()) == sum(20 - i for i in range(20))
    # more services later never add labels
    for i in range(20, 40):
        register(maxine, f"svc{i:02d}", 1)
        discover(maxine, f"svc{i:02d}", n=100)
    assert len({s for s, _ in obs.discoveries()}) == 6
    families = parse(obs.exposition().decode())
    assert len({labels["service"] for _, labels, _ in families["maxine_discoveries"][1]}) == 6


def test_model_hooks_feed_metrics_and_a_failing_hook_is_absent():
    maxine, obs = server_state()
    register(maxine, "svc", 1)
    maxine.models_status = lambda: [{"name": "latency-mlp", "version": "3", "freshnessSeconds": 12.5,
                                     "cacheAgeSeconds": 0.4, "fallbacks": 7, "fallbackActive": False}]
    maxine.anomalies = lambda: (200, {"anomalies": [{"type": "high_error_rate", "serviceName": "svc", "severity": "high"},
                                                    {"type": "drift", "serviceName": "svc", "severity": "low"},
                                                    {"type": "drift", "serviceName": "svc", "severity": "low"}]})
    maxine.fallbacks = 9
    families = parse(obs.exposition().decode())
    assert value(families, "maxine_models") == 1
    assert value(families, "maxine_model_freshness_seconds", model="latency-mlp") == 12.5
    assert value(families, "maxine_inference_cache_age_seconds", model="latency-mlp") == 0.4
    assert value(families, "maxine_model_fallbacks", model="latency-mlp") == 7
    assert value(families, "maxine_model_fallback_active", model="latency-mlp") == 0
    assert value(families, "maxine_fallbacks") == 9
    assert value(families, "maxine_open_anomalies") == 3
    assert value(families, "maxine_open_anomalies_by_type", type="drift") == 2

    def broken(*args):
        raise RuntimeError("model exploded")
    maxine.models_status = broken
    maxine.anomalies = broken
    maxine.predict_health = broken
    families = parse(obs.exposition().decode())
    assert value(families, "maxine_models") == 0
    assert value(families, "maxine_open_anomalies") == 0
    obs.sample()
    data = obs.dashboard_data()
    assert data["modelStatus"] == "no model yet" and data["anomalies"] == []


def test_events_and_persistence_errors_are_read_from_what_exists():
    maxine, obs = server_state()
    register(maxine, "svc", 1)
    store = type("Store", (), {"kind": "redis", "errors": 4, "healthy": False})()
    maxine.store = store
    families = parse(obs.exposition().decode())
    assert value(families, "maxine_persistence_errors", backend="redis") == 4
    assert value(families, "maxine_persistence_healthy", backend="redis") == 0
    events = getattr(maxine, "events", None)
    if events is not None and hasattr(events, "published"):
        assert value(families, "maxine_events_published") == events.published >= 1


def test_latency_histogram_buckets_and_quantiles():
    h = LatencyHistogram()
    for seconds in (4e-6, 15e-6, 15e-6, 15e-6, 1.0):
        h.observe(seconds)
    assert h.count() == 5
    cumulative = dict(h.cumulative())
    assert cumulative["5e-06"] == 1 and cumulative["2e-05"] == 4 and cumulative["+Inf"] == 5
    assert h.quantile(0.5) == 2e-05
    assert h.total[0] == pytest.approx(1.000049)


def test_health_score_reflects_errors_latency_and_staleness():
    clock = Clock()
    maxine, _ = server_state(clock)
    ids = [register(maxine, "svc", p) for p in (1, 2, 3)]
    nodes = [maxine.registry.nodes[i] for i in ids]
    for _ in range(20):
        nodes[0].state.on_result(10.0, True, clock.t)
        nodes[1].state.on_result(90.0, True, clock.t)
        nodes[2].state.on_result(10.0, False, clock.t)
    median = 10.0 * 5  # anything: relative to the service median
    assert health_score(nodes[0], clock.t, 10.0) == 100.0
    assert health_score(nodes[1], clock.t, 10.0) < 40.0
    assert health_score(nodes[2], clock.t, 10.0) < 50.0
    assert 0 <= health_score(nodes[2], clock.t, median) <= 100
    clock.t += 25.0  # 25 s of a 30 s lease without a heartbeat
    assert health_score(nodes[0], clock.t, None) < 50.0
    clock.t += 10.0
    assert health_score(nodes[0], clock.t, None) == 0.0


def test_attach_is_idempotent():
    maxine, obs = server_state()
    assert attach(maxine) is obs
    create_app(maxine=maxine)
    assert maxine.registry.listeners.count(obs.on_change) == 1
    assert maxine.background.count(obs.run_sampler) == 1
