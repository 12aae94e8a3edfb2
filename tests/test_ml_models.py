"""The ML hub in-process with a controlled clock: each anomaly type fires, the
forecast of a degrading node points the right way, scores and scaling react.

Everything here runs the real hub (river, statsmodels); only the clock is ours.
"""

from __future__ import annotations

from functools import partial
import pytest

from conftest import ManualClock
from maxine.api.operations import Maxine
from maxine.models import anomalies as rules
from maxine.models.hub import install


Clock = partial(ManualClock, 10_000.0)
NO_MODELS = "/nonexistent/maxine-models"


def make(n=4, ttl=30.0, service="svc", forecast=True):
    clock = Clock()
    m = Maxine(clock=clock)
    # the online models and statsmodels only: no trained anomaly/forecast artifacts (those are
    # exercised on simulated telemetry in test_train_health_models.py)
    hub = install(m, models_root=NO_MODELS)
    if not forecast:  # statsmodels fits cost ~45 ms each; tests that don't need them skip them
        hub.forecast_s = 1e12
    ids = [m.registry.register(service, "10.0.0.1", 8000 + i, {}, ttl).node_id for i in range(n)]
    return m, hub, clock, ids


def tick(m, hub, clock, ids, latency_of, fail_of=lambda k, step: False, reports=5, heartbeat=None, step=0):
    """One simulated second: reports for every node, heartbeats, one hub round."""
    clock.t += 1.0
    for k, nid in enumerate(ids):
        node = m.registry.nodes[nid]
        lat = latency_of(k, step)
        if lat is None:
            continue
        for j in range(reports):
            t = clock.t + j * 0.01
            node.state.on_dispatch(t)
            ok = not fail_of(k, step)
            node.state.on_result(lat, ok, t)
            m.balancers.learn_one(node, lat, ok, t)
        if heartbeat is None or heartbeat(k, step):
            m.registry.heartbeat(nid, {"in_flight": 1, "qps": reports, "cpu": 0.2, "latency_ms": lat})
    return hub.refresh()


def types_for(hub, node_id=None, service=None):
    _, payload = hub.anomalies(service)
    return {a["type"] for a in payload["anomalies"] if node_id is None or a.get("nodeId") == node_id}


def test_high_response_time_and_trend_and_prediction_direction():
    m, hub, clock, ids = make()
    # node 0 degrades linearly; the others stay at 20 ms
    for step in range(40):
        tick(m, hub, clock, ids, lambda k, s: 20.0 + (6.0 * s if k == 0 else 0.0), step=step)
    kinds = types_for(hub, ids[0])
    assert "high_response_time" in kinds
    assert "response_time_trend" in kinds
    assert not types_for(hub, ids[1])
    status, payload = hub.predict_health("svc", 60_000)
    assert status == 200 and payload["predictionWindow"] == 60_000
    p = payload["predictions"][ids[0]]
    assert p["trend"] > 0
    assert p["predictedResponseTime"] > p["currentResponseTime"] > 200
    assert p["predictedScore"] < p["currentScore"] <= 100
    q = payload["predictions"][ids[1]]
    assert abs(q["trend"]) < 0.5 and q["predictedScore"] >= 95
    scores = hub.health_scores("svc")
    assert scores[ids[0]] < 50 <= min(scores[i] for i in ids[1:])
    # anomalies are sorted by severity
    order = [rules.SEVERITY_ORDER[a["severity"]] for a in hub.anomalies()[1]["anomalies"]]
    assert order == sorted(order)


def test_improving_node_predicts_lower_latency():
    m, hub, clock, ids = make(n=3)
    for step in range(40):
        tick(m, hub, clock, ids, lambda k, s: (400.0 - 8.0 * s) if k == 0 else 50.0, step=step)
    p = hub.predict_health("svc", 30_000)[1]["predictions"][ids[0]]
    assert p["trend"] < 0
    assert p["predictedResponseTime"] < p["currentResponseTime"]


def test_high_error_rate():
    m, hub, clock, ids = make(forecast=False)
    for step in range(15):
        tick(m, hub, clock, ids, lambda k, s: 20.0, fail_of=lambda k, s: k == 2, step=step)
    found = [a for a in hub.anomalies("svc")[1]["anomalies"] if a["type"] == "high_error_rate"]
    assert [a["nodeId"] for a in found] == [ids[2]]
    assert found[0]["value"] > 0.1 and found[0]["severity"] in ("high", "critical")


def test_stale_heartbeat():
    m, hub, clock, ids = make(ttl=30.0, forecast=False)
    for step in range(20):  # node 3 stops heartbeating; 20 s > ttl / 2
        tick(m, hub, clock, ids, lambda k, s: 20.0, heartbeat=lambda k, s: k != 3, step=step)
    found = [a for a in hub.anomalies()[1]["anomalies"] if a["type"] == "stale_heartbeat"]
    assert [a["nodeId"] for a in found] == [ids[3]]
    assert found[0]["value"] > found[0]["threshold"] == 15.0


def test_no_healthy_nodes_when_all_leases_passed():
    m, hub, clock, ids = make(n=2, ttl=5.0)
    tick(m, hub, clock, ids, lambda k, s: 20.0)
    clock.t += 10.0  # every lease passed; no sweeper runs in this test
    hub.refresh()
    found = [a for a in hub.anomalies("svc")[1]["anomalies"] if a["type"] == "no_healthy_nodes"]
    assert found and found[0]["severity"] == "critical"


def test_no_healthy_nodes_when_every_node_fails():
    m, hub, clock, ids = make(n=2, forecast=False)
    for step in range(30):
        tick(m, hub, clock, ids, lambda k, s: 20.0, fail_of=lambda k, s: True, step=step)
    assert "no_healthy_nodes" in types_for(hub, service="svc")


def test_no_nodes_after_last_instance_leaves():
    m, hub, clock, ids = make(n=1, service="gone")
    tick(m, hub, clock, ids, lambda k, s: 20.0)
    m.registry.deregister(ids[0])
    hub.refresh()
    found = [a for a in hub.anomalies()[1]["anomalies"] if a["type"] == "no_nodes"]
    assert found and found[0]["serviceName"] == "gone"
    status, payload = hub.scaling("gone")
    assert status == 200 and payload["recommendations"][0]["action"] == "scale_up"
    m.registry.register("gone", "10.0.0.1", 8000, {}, 30)
    hub.refresh()
    assert "no_nodes" not in types_for(hub)


def test_drift_detected_on_a_step_change():
    m, hub, clock, ids = make(n=3, forecast=False)
    for step in range(60):
        tick(m, hub, clock, ids, lambda k, s: (200.0 if (k == 1 and s >= 40) else 20.0), reports=10, step=step)
    assert "drift" in types_for(hub, ids[1])
    assert "drift" not in types_for(hub, ids[0])
    assert hub.cache.node(ids[1]).drift_at is not None


def test_anomaly_score_fires_on_an_outlying_feature_row():
    import random
    rng = random.Random(5)
    m, hub, clock, ids = make(n=4, forecast=False)
    for step in range(80):  # warm the Half-Space Trees on ordinary, varied rows
        tick(m, hub, clock, ids, lambda k, s: rng.uniform(10.0, 40.0), reports=rng.randint(3, 8), step=step)
    assert "anomaly_score" not in types_for(hub)
    # one ordinary second for nodes 1-3; node 0 reports an extreme load, errors and slowness
    node = m.registry.nodes[ids[0]]
    for j in range(40):
        node.state.on_dispatch(clock.t + 0.5)
    tick(m, hub, clock, ids, lambda k, s: rng.uniform(10.0, 40.0), heartbeat=lambda k, s: k != 0, step=99)
    m.registry.heartbeat(ids[0], {"in_flight": 500, "qps": 900, "cpu": 1.0, "latency_ms": 5000.0, "error_rate": 1.0})
    hub.refresh()
    found = [a for a in hub.anomalies()[1]["anomalies"] if a["type"] == "anomaly_score"]
    assert [a["nodeId"] for a in found] == [ids[0]]
    assert found[0]["value"] > rules.ANOMALY_THRESHOLD


def test_every_type_is_covered_here():
    import sys
    src = open(sys.modules[__name__].__file__).read()
    for kind in rules.TYPES:
        assert f'"{kind}"' in src


def test_scaling_up_when_forecast_load_exceeds_capacity():
    m, hub, clock, ids = make(n=2)
    # each instance serves ~10 req/s at 100 ms (capacity 10/s from qps/cpu); load ramps up
    for step in range(30):
        clock.t += 1.0
        load = 4.0 + step
        for nid in ids:
            node = m.registry.nodes[nid]
            for _ in range(int(load / 2)):
                node.state.on_dispatch(clock.t)
            m.registry.heartbeat(nid, {"in_flight": 2, "qps": load / 2, "cpu": min(1.0, load / 20.0),
                                       "latency_ms": 100.0})
        hub.refresh()
    status, payload = hub.scaling("svc")
    rec = payload["recommendations"][0]
    assert rec["action"] == "scale_up", rec
    assert rec["recommendedInstances"] > 2
    assert rec["metrics"]["forecastLoad"] >= rec["metrics"]["currentLoad"] > 30
    assert payload["timestamp"].endswith("Z")


def test_models_status_reports_training():
    m, hub, clock, ids = make()
    for step in range(12):
        tick(m, hub, clock, ids, lambda k, s: 20.0, step=step)
    by = {x["name"]: x for x in m.models_status()}
    assert by["latency-predictor"]["trainingRows"] > 100
    assert by["anomaly-detector"]["trainingRows"] == 48
    assert by["forecaster"]["fits"] > 0
    assert by["ai-driven"]["fallbacks"] == 0
    assert by["latency-predictor"]["cacheAgeSeconds"] == 0.0


@pytest.mark.parametrize("window", [1_000, 300_000])
def test_prediction_without_history_is_the_present(window):
    m, hub, clock, ids = make(n=2)
    status, payload = hub.predict_health("svc", window)
    assert status == 200
    for p in payload["predictions"].values():
        assert p["confidence"] == 0.0 and p["trend"] == 0.0
    assert hub.predict_health("nope", window)[0] == 404


def test_learned_anomaly_fires_above_its_threshold_and_its_peers():
    """The trained model's score (error / threshold; tests/test_train_health_models.py runs the model):
    a node fires when it is above 1 and above twice its peers' median, so a model trained on another
    scale that scores every node alike does not flag them all."""
    def views(*scores):
        return [rules.NodeView(f"n{k}", learned_anomaly=s) for k, s in enumerate(scores)]

    found = [a for a in rules.detect_service("svc", views(4.0, 0.3, 0.5, None), 0.0) if a["type"] == "learned_anomaly"]
    assert [a["nodeId"] for a in found] == ["n0"] and found[0]["severity"] == "high"
    assert not [a for a in rules.detect_service("svc", views(1.8, 1.9, 1.7), 0.0) if a["type"] == "learned_anomaly"]
    assert [a["nodeId"] for a in rules.detect_service("svc", views(1.5), 0.0)] == ["n0"]


def test_a_round_lets_the_event_loop_in_between_its_units_of_work(monkeypatch):
    """The worker thread releases the GIL between services, learned rows and fits, so the
    event loop does not wait out the 5 ms switch interval behind a whole round."""
    from maxine.models import hub as hub_module

    m, hub, clock, ids = make(n=3)
    for step in range(6):  # enough history for the forecaster to fit
        tick(m, hub, clock, ids, lambda k, s: 20.0 + s, step=step)
    calls = []
    monkeypatch.setattr(hub_module, "let_the_loop_run", lambda: calls.append(1))
    fits_before = hub.forecaster.fits
    clock.t += 10.0
    tick(m, hub, clock, ids, lambda k, s: 30.0, step=6)
    fits = hub.forecaster.fits - fits_before
    assert fits > 0
    # once per service (twice: learning, then scoring), once per learned row, once per fit
    assert len(calls) == 2 + len(ids) + fits
