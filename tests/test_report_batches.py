"""``POST /record-response-times``: several reports in one request, applied in
order as one-by-one reports would be, with advanced-ml re-scoring once per batch."""

from __future__ import annotations

import math

from conftest import scored_registry

from maxine.api.operations import Maxine
from maxine.balancers.learned import CACHE_KEY


def register(http, name, port):
    response = http.post("/register", json={"serviceName": name, "host": "127.0.0.1", "port": port})
    assert response.status_code == 200, response.text
    return response.json()["nodeId"]


def test_a_batch_is_applied_and_unknown_nodes_are_named(http, svc_name):
    a, b = register(http, svc_name, 7101), register(http, svc_name, 7102)
    response = http.post("/record-response-times", json={"reports": [
        {"nodeId": a, "responseTime": 40.0}, {"nodeId": "gone:1.2.3.4:5", "responseTime": 1.0},
        {"nodeId": b, "responseTime": 900.0, "success": False, "statusCode": 503}]})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "recorded": 2, "unknownNodeIds": ["gone:1.2.3.4:5"]}
    assert http.get(f"/health/{a}").json()["responseTime"] > 0.0
    assert http.get(f"/health/{b}").json()["load"]["errorRate"] > 0.0


def test_a_malformed_batch_changes_nothing(http, svc_name):
    a = register(http, svc_name, 7103)
    before = http.get(f"/health/{a}").json()["responseTime"]
    response = http.post("/record-response-times", json={"reports": [
        {"nodeId": a, "responseTime": 40.0}, {"nodeId": a, "responseTime": -3}]})
    assert response.status_code == 400
    assert response.json()["details"] == ["reports[1].responseTime: must be a number >= 0 and <= 8.64e+07"]
    assert http.get(f"/health/{a}").json()["responseTime"] == before
    for body in ({"reports": []}, {"reports": [{}] * 1001}, [], {"reports": "x"}):
        answer = http.post("/record-response-times", json=body)
        assert answer.status_code == 400 and answer.json()["error"] == "Validation failed"


def _maxine_with_reports(batched: bool) -> tuple[Maxine, list]:
    maxine, ids = scored_registry()
    reports = [{"nodeId": ids[i % 4], "responseTime": 10.0 + 7.0 * i} for i in range(10)]
    if batched:
        assert maxine.record_response_times({"reports": reports})[0] == 200
    else:
        for report in reports:
            assert maxine.record_response_time(report)[0] == 200
    return maxine, [maxine.registry.get(i) for i in ids]


def test_a_batch_leaves_the_same_state_and_scores_as_one_report_at_a_time():
    (_, batched), (_, single) = _maxine_with_reports(True), _maxine_with_reports(False)
    for b, s in zip(batched, single):
        assert b.state.results == s.state.results
        assert b.state.peak_ewma(1000.5) == s.state.peak_ewma(1000.5)
        assert math.isclose(b.state.extra[CACHE_KEY][3], s.state.extra[CACHE_KEY][3], rel_tol=1e-9)
