"""The dashboard's JSON, its sampled history, the model hooks it shows, and how
its static files are served."""

from __future__ import annotations

from functools import partial
import pytest

from conftest import ManualClock
from maxine.api import create_app
from maxine.api.observability import BY_STRATEGY, predictions


Clock = partial(ManualClock, 2_000_000.0)


@pytest.fixture
def state():
    from maxine.api.operations import Maxine
    from maxine.settings import Settings
    clock = Clock()
    maxine = Maxine(Settings(), clock=clock)
    create_app(maxine=maxine)
    for hook in HOOKS:  # these tests cover the "no model yet" state; see test_learned_models_*
        setattr(maxine, hook, None)
    return maxine, maxine.observability, clock


HOOKS = ("models_status", "models", "anomalies", "predict_health", "health_scores")


def register(maxine, service, port):
    return maxine.register({"serviceName": service, "host": "10.2.0.1", "port": port})[1]["nodeId"]


def discover(maxine, service, strategy, n):
    for _ in range(n):
        assert maxine.discover(f"serviceName={service}&loadBalancing={strategy}".encode())[0] == 200


def test_history_records_per_interval_picks_by_strategy(state):
    maxine, obs, clock = state
    a, b = register(maxine, "svc", 1), register(maxine, "svc", 2)
    obs.sample()
    discover(maxine, "svc", "round-robin", 10)
    clock.t += 2
    obs.sample()
    discover(maxine, "svc", "random", 7)
    discover(maxine, "svc", "round-robin", 2)
    clock.t += 2
    obs.sample()
    data = obs.dashboard_data()
    ha, hb = data["history"][a], data["history"][b]
    assert len(ha["t"]) == 3 and ha["t"][2] - ha["t"][1] == 2000
    assert [x + y for x, y in zip(ha["dispatches"]["round-robin"], hb["dispatches"]["round-robin"])] == [0, 10, 2]
    random_a = ha["dispatches"].get("random", [0, 0, 0])
    random_b = hb["dispatches"].get("random", [0, 0, 0])
    assert len(random_a) == len(random_b) == 3 and random_a[2] + random_b[2] == 7 and random_a[1] + random_b[1] == 0
    assert all(v == 100.0 for v in ha["score"]) and ha["predicted"] == [None, None, None]
    inst = {i["nodeId"]: i for i in data["services"][0]["instances"]}
    assert inst[a]["byStrategy"]["round-robin"] + inst[b]["byStrategy"]["round-robin"] == 12
    assert data["modelStatus"] == "no model yet" and data["models"] == [] and data["anomalyDetector"] is False


def test_history_forgets_departed_nodes(state):
    maxine, obs, clock = state
    a = register(maxine, "svc", 1)
    obs.sample()
    maxine.deregister({"nodeId": a})
    clock.t += 2
    obs.sample()
    assert a not in obs.dashboard_data()["history"]


def test_prediction_hook_gives_a_forecast_band(state):
    maxine, obs, clock = state
    a = register(maxine, "svc", 1)
    maxine.predict_health = lambda service, window: (200, {"serviceName": service, "predictions": {
        a: {"currentScore": 90, "predictedScore": 70, "trend": "degrading", "confidence": 0.8}}})
    obs.sample()
    h = obs.dashboard_data()["history"][a]
    assert h["predicted"] == [70.0]
    assert h["lower"] == [60.0] and h["upper"] == [80.0]  # +- 50 * (1 - confidence)
    explicit = predictions(type("M", (), {"predict_health": lambda self, s, w: {
        "predictions": {"n": {"predictedScore": 95, "lower": 80, "upper": 130}, "bad": {"predictedScore": "x"}}}})(), "svc")
    assert explicit == {"n": {"predictedScore": 95.0, "lower": 80.0, "upper": 100.0}}


def test_learned_health_scores_replace_the_telemetry_score(state):
    maxine, obs, _ = state
    a, b = register(maxine, "svc", 1), register(maxine, "svc", 2)
    maxine.health_scores = lambda service: {a: 42.0, b: 88.5} if service == "svc" else None
    obs.sample()
    data = obs.dashboard_data()
    assert data["healthScoreSource"] == "model"
    assert {i["nodeId"]: i["healthScore"] for i in data["services"][0]["instances"]} == {a: 42.0, b: 88.5}
    assert data["history"][a]["score"] == [42.0]


def test_learned_models_show_when_the_ml_hub_is_installed():
    from maxine.api.operations import Maxine
    from maxine.settings import Settings
    maxine = Maxine(Settings(), clock=Clock())
    create_app(maxine=maxine)
    if getattr(maxine, "ml", None) is None:
        pytest.skip("no ML hub in this build")
    register(maxine, "svc", 1)
    discover(maxine, "svc", "round-robin", 3)
    obs = maxine.observability
    obs.sample()
    data = obs.dashboard_data()
    assert data["models"] and data["modelStatus"] == "ok"
    assert data["anomalyDetector"] is True


def test_dispatch_counts_live_in_node_state_extra(state):
    maxine, _, _ = state
    a = register(maxine, "svc", 1)
    discover(maxine, "svc", "least-connections", 3)
    assert maxine.registry.nodes[a].state.extra[BY_STRATEGY] == {"least-connections": 3}


# --- over HTTP --------------------------------------------------------------------------------
def test_pages_and_assets(http):
    page = http.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "/dashboard/static/dashboard.js" in page.text and "http://" not in page.text and "https://" not in page.text
    for name, kind in (("dashboard.js", "text/javascript"), ("charts.js", "text/javascript"), ("dashboard.css", "text/css")):
        response = http.get(f"/dashboard/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert http.get(f"/dashboard/static/{name}", headers={"If-None-Match": response.headers["etag"]}).status_code == 304
        assert "https://" not in response.text  # no CDN
    assert http.get("/dashboard/static/nope.js").status_code == 404
    assert http.get("/dashboard/static/..%2Foperations.py").status_code == 404


def test_dashboard_data_over_http(http, svc_name):
    node_id = http.post("/register", json={"serviceName": svc_name, "host": "10.3.0.1", "port": 9}).json()["nodeId"]
    http.get("/discover", params={"serviceName": svc_name})
    data = http.get("/dashboard/data").json()
    assert data["modelStatus"] == ("ok" if data["models"] else "no model yet")
    service = next(s for s in data["services"] if s["name"] == svc_name)
    assert service["instances"][0]["nodeId"] == node_id and service["instances"][0]["dispatches"] == 1
    assert data["totals"]["discoveries"] >= 1


def test_dependency_graph_json_and_page(http):
    http.post("/record-call", json={"callerService": "dg-a", "calledService": "dg-b"})
    graph = http.get("/dependency-graph").json()
    assert {"caller": "dg-a", "called": "dg-b"}.items() <= next(e for e in graph["edges"] if e["caller"] == "dg-a").items()
    assert http.get("/dependency-graph/data").json() == graph
    page = http.get("/dependency-graph", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html") and "dependency-graph.js" in page.text
