"""Property test: no generated input makes any endpoint answer 5xx or kill the server."""

from __future__ import annotations

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_server

BODY_ENDPOINTS = [("POST", "/register"), ("POST", "/heartbeat"), ("DELETE", "/deregister"),
                  ("POST", "/record-response-time"), ("POST", "/record-response-times"), ("POST", "/record-call")]
KEYS = ["serviceName", "host", "port", "metadata", "nodeId", "ttl", "inFlight", "cpu", "qps", "errorRate",
        "latencyMs", "responseTime", "success", "statusCode", "callerService", "calledService",
        "version", "weight", "tags", "healthCheck", "lat", "lon", "cost", "zone", "region", "reports"]

weird_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", " ", "\u0000", "\u202e", "a" * 300, "fuzz", "fuzz:127.0.0.1:1", "../etc", "1e309", "NaN"])
numbers = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
leaves = st.none() | st.booleans() | numbers | weird_text
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(KEYS) | weird_text, inner, max_size=5), max_leaves=20)
bodies = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)
raw_bodies = st.binary(max_size=200) | bodies.map(orjson.dumps) | json_values.map(orjson.dumps)


@pytest.fixture(scope="module")
def fuzz_server():
    with run_server() as srv, httpx.Client(base_url=srv.url, timeout=10) as http:
        # something to hit, so valid-looking node ids sometimes exist
        http.post("/register", json={"serviceName": "fuzz", "host": "127.0.0.1", "port": 1})
        yield srv, http


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("method,path", BODY_ENDPOINTS)
@FUZZ
@given(body=raw_bodies)
def test_bodies_never_5xx(fuzz_server, method, path, body):
    srv, http = fuzz_server
    response = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500, (path, body, response.text)
    assert isinstance(response.json(), dict)


query_values = weird_text | numbers.map(str)
queries = st.dictionaries(st.sampled_from(["serviceName", "loadBalancing", "version", "tags", "clientId",
                                           "lat", "lon", "zone", "region"]) | weird_text, query_values, max_size=6)


@FUZZ
@given(params=queries, strategy=st.sampled_from(["round-robin", "geo-aware", "consistent-hash", "cost-aware",
                                                 "least-response-time", "weighted-random", "bogus"]))
def test_discover_queries_never_5xx(fuzz_server, params, strategy):
    srv, http = fuzz_server
    params = {"serviceName": "fuzz", "loadBalancing": strategy, **params}
    response = http.get("/discover", params=params)
    assert response.status_code < 500, (params, response.text)


@FUZZ
@given(segment=weird_text.filter(lambda s: s not in ("", ".", "..")), query=queries)
def test_path_and_query_reads_never_5xx(fuzz_server, segment, query):
    srv, http = fuzz_server
    from urllib.parse import quote

    for path in (f"/services/{quote(segment, safe='')}", f"/health/{quote(segment, safe='')}", "/versions",
                 "/servers", "/metrics", "/health"):
        response = http.get(path, params=query)
        assert response.status_code < 500, (path, query, response.text)


def test_server_survived(fuzz_server):
    srv, http = fuzz_server
    assert srv.proc.poll() is None
    assert http.get("/health").status_code == 200
