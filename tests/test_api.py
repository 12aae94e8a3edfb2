"""The HTTP contract, endpoint by endpoint, against a real server on loopback."""

from __future__ import annotations

import httpx
import pytest


def register(http, name, port, **extra):
    body = {"serviceName": name, "host": "127.0.0.1", "port": port, **extra}
    response = http.post("/register", json=body)
    assert response.status_code == 200, response.text
    return response.json()["nodeId"]


def test_register_returns_node_id(http, svc_name):
    response = http.post("/register", json={"serviceName": svc_name, "host": "10.0.0.1", "port": 3000})
    assert response.status_code == 200
    assert response.json()["nodeId"] == f"{svc_name}:10.0.0.1:3000"
    assert response.json()["status"] == "registered"


def test_register_validation_names_each_bad_field(http):
    response = http.post("/register", json={"serviceName": "bad name!", "host": "", "port": 70000,
                                            "metadata": {"weight": -1, "tags": ["x"] * 11}})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Validation failed"
    joined = " ".join(body["details"])
    for field in ("serviceName", "host", "port", "metadata.weight", "metadata.tags"):
        assert field in joined
    assert http.get("/servers").json()["services"].count("bad name!") == 0


def test_reregister_replaces_metadata(http, svc_name):
    register(http, svc_name, 1, metadata={"version": "1.0", "zone": "a"})
    register(http, svc_name, 1, metadata={"version": "2.0"})
    instances = http.get(f"/services/{svc_name}").json()["instances"]
    assert len(instances) == 1
    assert instances[0]["metadata"] == {"version": "2.0"}


def test_discover_shape_and_round_robin(http, svc_name):
    ids = {register(http, svc_name, port) for port in (1, 2, 3)}
    picks = [http.get("/discover", params={"serviceName": svc_name}).json() for _ in range(6)]
    assert {p["nodeId"] for p in picks} == ids
    first = picks[0]
    assert set(first) >= {"nodeId", "serviceName", "address", "host", "port", "metadata", "healthy", "strategy"}
    assert first["strategy"] == "round-robin" and first["healthy"] is True
    assert first["address"] == f"{first['host']}:{first['port']}"
    # round-robin cycles: each of the 3 appears twice in 6 picks
    assert sorted(p["nodeId"] for p in picks) == sorted(list(ids) * 2)


def test_discover_errors(http, svc_name):
    assert http.get("/discover").json() == {"error": "Missing serviceName"}
    assert http.get("/discover").status_code == 400
    missing = http.get("/discover", params={"serviceName": svc_name})
    assert missing.status_code == 404 and missing.json() == {"message": "Service unavailable"}
    register(http, svc_name, 1)
    unknown = http.get("/discover", params={"serviceName": svc_name, "loadBalancing": "nope"})
    assert unknown.status_code == 400
    assert "round-robin" in unknown.json()["validStrategies"]
    assert "least-connections" in unknown.json()["validStrategies"]


def test_discover_version_and_tags(http, svc_name):
    register(http, svc_name, 1, metadata={"version": "1.9", "tags": ["web"]})
    register(http, svc_name, 2, metadata={"version": "1.10", "tags": ["web", "api"]})
    register(http, svc_name, 3, metadata={"version": "1.2", "tags": ["api"]})
    get = lambda **q: http.get("/discover", params={"serviceName": svc_name, **q})
    assert get(version="1.9").json()["port"] == 1
    assert get(version="latest").json()["port"] == 2  # 1.10 > 1.9
    assert get(version="3.0").status_code == 404
    assert {get(tags="web,api").json()["port"] for _ in range(4)} == {2}
    assert {get(tags="api").json()["port"] for _ in range(6)} == {2, 3}
    assert http.get("/versions", params={"serviceName": svc_name}).json()["versions"] == ["1.2", "1.9", "1.10"]


def test_every_strategy_is_servable(http, svc_name):
    for port in (1, 2, 3):
        register(http, svc_name, port, metadata={"weight": port, "cost": port, "lat": 50.0 + port, "lon": 10.0})
    names = http.get("/discover", params={"serviceName": svc_name, "loadBalancing": "?"}).json()["validStrategies"]
    assert len(names) >= 11
    for name in names:
        response = http.get("/discover", params={"serviceName": svc_name, "loadBalancing": name,
                                                 "clientId": "c1", "lat": "51", "lon": "10"})
        assert response.status_code == 200, (name, response.text)
        assert response.json()["strategy"] == name


def test_geo_and_cost_aware_over_http(http, svc_name):
    register(http, svc_name, 1, metadata={"lat": 48.85, "lon": 2.35, "cost": 5, "zone": "eu"})   # Paris
    register(http, svc_name, 2, metadata={"lat": 40.71, "lon": -74.0, "cost": 1, "zone": "us"})  # New York
    near = http.get("/discover", params={"serviceName": svc_name, "loadBalancing": "geo-aware",
                                         "lat": "51.5", "lon": "-0.12"}).json()  # London
    assert near["port"] == 1
    zone = http.get("/discover", params={"serviceName": svc_name, "loadBalancing": "geo-aware", "zone": "us"}).json()
    assert zone["port"] == 2
    cheap = http.get("/discover", params={"serviceName": svc_name, "loadBalancing": "cost-aware"}).json()
    assert cheap["port"] == 2


def test_heartbeat_known_and_unknown(http, svc_name):
    node = register(http, svc_name, 1)
    ok = http.post("/heartbeat", json={"nodeId": node, "inFlight": 2, "cpu": 0.5, "qps": 10,
                                       "errorRate": 0.01, "latencyMs": 12})
    assert ok.status_code == 200 and ok.json() == {"success": True}
    health = http.get(f"/health/{node}").json()
    assert health["load"]["reported"]["cpu"] == 0.5
    gone = http.post("/heartbeat", json={"nodeId": f"{svc_name}:nowhere:1"})
    assert gone.status_code == 404
    assert gone.json()["success"] is False and "Unknown nodeId" in gone.json()["error"]
    bad = http.post("/heartbeat", json={"nodeId": node, "cpu": 1.5})
    assert bad.status_code == 400 and "cpu" in " ".join(bad.json()["details"])


def test_deregister_is_idempotent_and_terminal(http, svc_name):
    node = register(http, svc_name, 1)
    first = http.request("DELETE", "/deregister", json={"nodeId": node})
    assert first.json() == {"success": True, "removed": True}
    second = http.request("DELETE", "/deregister", json={"nodeId": node})
    assert second.json() == {"success": True, "removed": False}
    assert http.post("/heartbeat", json={"nodeId": node}).status_code == 404  # no resurrection
    assert http.get("/discover", params={"serviceName": svc_name}).status_code == 404


def test_servers_services_health_versions_metrics(http, svc_name):
    node = register(http, svc_name, 1, metadata={"version": "1.0"})
    assert svc_name in http.get("/servers").json()["services"]
    service = http.get(f"/services/{svc_name}").json()
    assert service["serviceName"] == svc_name
    inst = service["instances"][0]
    assert {"nodeId", "address", "metadata", "lastHeartbeat", "healthy"} <= set(inst)
    assert http.get("/services/no-such-service").status_code == 404
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["services"] >= 1 and health["nodes"] >= 1
    node_health = http.get(f"/health/{node}").json()
    assert node_health["nodeId"] == node and node_health["timeSinceLastHeartbeat"] >= 0
    assert http.get("/health/nope:1:2").status_code == 404
    assert http.get("/versions").status_code == 400
    assert http.get("/versions", params={"serviceName": "no-such"}).status_code == 404
    http.get("/discover", params={"serviceName": svc_name, "loadBalancing": "random"})
    metrics = http.get("/metrics").json()
    assert metrics["discoveries"]["random"] >= 1
    assert {"uptime", "requests", "errors", "services", "nodes"} <= set(metrics)


def test_record_response_time_and_call(http, svc_name):
    node = register(http, svc_name, 1)
    http.get("/discover", params={"serviceName": svc_name})
    assert http.get(f"/health/{node}").json()["load"]["inFlight"] == 1
    ok = http.post("/record-response-time", json={"nodeId": node, "responseTime": 42.0})
    assert ok.json() == {"success": True}
    load = http.get(f"/health/{node}").json()["load"]
    assert load["inFlight"] == 0 and load["latencyEwmaMs"] == pytest.approx(42.0, rel=0.01)
    failed = http.post("/record-response-time", json={"nodeId": node, "responseTime": 1, "statusCode": 503})
    assert failed.status_code == 200
    assert http.get(f"/health/{node}").json()["load"]["failures"] == 1
    assert http.post("/record-response-time", json={"nodeId": "x:y:1", "responseTime": 1}).status_code == 404
    assert http.post("/record-response-time", json={"nodeId": node, "responseTime": -1}).status_code == 400
    assert http.post("/record-call", json={"callerService": "web", "calledService": svc_name}).json() == {"success": True}
    assert http.post("/record-call", json={"callerService": "web"}).status_code == 400


@pytest.mark.parametrize("method,path", [("POST", "/register"), ("POST", "/heartbeat"),
                                         ("DELETE", "/deregister"), ("POST", "/record-response-time"),
                                         ("POST", "/record-call")])
def test_malformed_json_and_non_objects(http, method, path):
    bad = http.request(method, path, content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json() == {"error": "Invalid JSON"}
    for body in (b"[]", b"1", b'"x"', b"null", b"NaN", b'{"nodeId": NaN}'):
        response = http.request(method, path, content=body)
        assert response.status_code == 400, (path, body, response.text)
        assert "error" in response.json()


def test_error_shapes(http):
    assert http.get("/nope").status_code == 404 and "error" in http.get("/nope").json()
    wrong = http.get("/heartbeat")
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method not allowed"}
    huge = http.post("/register", content=b'{"a":"' + b"x" * (1 << 20) + b'"}')
    # the rest of the body is left unread: the server closes the connection and says so,
    # so the client does not send its next request down it
    assert huge.status_code == 413 and "error" in huge.json() and huge.headers["connection"] == "close"
    chunked = http.post("/heartbeat", content=iter([b'{"nodeId":"', b"x" * (1 << 20), b'"}']))
    assert chunked.status_code == 413 and chunked.headers["connection"] == "close"
    assert http.get("/health").status_code == 200


def test_openapi_lists_every_endpoint(http):
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/register", "/heartbeat", "/deregister", "/discover", "/servers", "/services/{service_name}",
                 "/health", "/health/{node_id}", "/versions", "/metrics", "/record-response-time", "/record-call"):
        assert path in paths, path
    assert http.get("/docs").status_code == 200


def test_fast_path_off_serves_the_same_contract(svc_name):
    from conftest import run_server

    with run_server(env={"MAXINE_FAST_PATH": "false"}) as srv, httpx.Client(base_url=srv.url) as http:
        node = register(http, svc_name, 1)
        assert http.get("/discover", params={"serviceName": svc_name}).json()["nodeId"] == node
        assert http.get("/discover").json() == {"error": "Missing serviceName"}
        assert http.post("/heartbeat", json={"nodeId": node}).json() == {"success": True}
        assert http.post("/record-response-time", json={"nodeId": node, "responseTime": 3}).json() == {"success": True}
        assert http.post("/heartbeat", content=b"{").json() == {"error": "Invalid JSON"}
        huge = http.post("/heartbeat", content=b'{"a":"' + b"x" * (1 << 20) + b'"}')
        assert huge.status_code == 413 and huge.headers["connection"] == "close"
