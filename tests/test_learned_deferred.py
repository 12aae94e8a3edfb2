"""On the server, client reports are noted at once and the strategies settle at the end
of the event-loop iteration (``Balancers.defer``): advanced-ml makes one forward pass for
every report of the iteration, and leaves the same scores."""

from __future__ import annotations

import asyncio
import math

from conftest import scored_registry

from maxine.api.operations import Maxine
from maxine.balancers.learned import CACHE_KEY

REPORTS = [(i % 4, 10.0 + 7.0 * i) for i in range(10)]


def _predictions(maxine: Maxine, ids: list[str]) -> list[float]:
    return [maxine.registry.get(n).state.extra[CACHE_KEY][3] for n in ids]


def test_the_reports_of_one_iteration_share_one_forward_and_leave_the_same_scores():
    immediate, ids = scored_registry()
    for i, ms in REPORTS:
        assert immediate.record_response_time({"nodeId": ids[i], "responseTime": ms})[0] == 200

    deferred, _ = scored_registry()
    balancers = deferred.balancers

    async def reports_in_one_iteration():
        balancers.defer = asyncio.get_running_loop().call_soon
        before = _predictions(deferred, ids)
        for i, ms in REPORTS:
            assert deferred.record_response_time({"nodeId": ids[i], "responseTime": ms})[0] == 200
        during = _predictions(deferred, ids)
        await asyncio.sleep(0)  # the end of the iteration
        return before, during

    before, during = asyncio.run(reports_in_one_iteration())
    assert during == before  # nothing re-scored inside the iteration
    assert (balancers.deferred_reports, balancers.deferred_settles) == (10, 1)
    assert balancers.get("advanced-ml").status()["reportsPerDeferredRefresh"] == 10.0
    for a, b in zip(_predictions(immediate, ids), _predictions(deferred, ids)):
        assert math.isclose(a, b, rel_tol=1e-9)
    assert _predictions(deferred, ids) != before


def test_a_closed_loop_means_scoring_at_once():
    maxine, ids = scored_registry()
    balancers = maxine.balancers
    loop = asyncio.new_event_loop()
    loop.close()
    balancers.defer = loop.call_soon
    before = _predictions(maxine, ids)[0]
    assert maxine.record_response_time({"nodeId": ids[0], "responseTime": 250.0})[0] == 200
    assert balancers.defer is None and balancers.deferred_reports == 0
    assert _predictions(maxine, ids)[0] != before


def test_the_server_defers_and_says_how_many_reports_a_forward_covered(http, svc_name):
    node = http.post("/register", json={"serviceName": svc_name, "host": "127.0.0.1", "port": 7310}).json()["nodeId"]
    assert http.get("/discover", params={"serviceName": svc_name, "loadBalancing": "advanced-ml"}).status_code == 200
    for ms in (12.0, 15.0, 30.0):
        assert http.post("/record-response-time", json={"nodeId": node, "responseTime": ms}).status_code == 200
    models = http.get("/models").json()
    models = models if isinstance(models, list) else models["models"]
    (status,) = [m for m in models if m.get("name") == "advanced-ml"]
    assert status["reportsPerDeferredRefresh"] >= 1.0


def test_a_deferred_re_score_tells_the_cost_books_and_only_them():
    """A pick in the same iteration as the report may settle its book from the old
    prediction; the re-score at the end of the iteration marks the node dirty again in
    every advanced-ml cost book, and in no other strategy's cache (none reads it)."""
    from maxine.balancers.learned import CostBook

    maxine, ids = scored_registry()
    for _ in range(4):
        maxine.discover(b"serviceName=s&loadBalancing=least-response-time")
    state = maxine.registry.get(ids[0]).state
    watchers = [ref() for ref in state.watchers]
    books = [w for w in watchers if type(w) is CostBook]
    scans = [w for w in watchers if type(w) is not CostBook]
    assert books and scans

    async def report_pick_then_settle():
        maxine.balancers.defer = asyncio.get_running_loop().call_soon
        assert maxine.record_response_time({"nodeId": ids[0], "responseTime": 400.0})[0] == 200
        for name in ("advanced-ml", "least-response-time"):  # each settles its cache, clearing the node
            maxine.discover(f"serviceName=s&loadBalancing={name}".encode())
        assert all(state not in w.dirty for w in books + scans)
        await asyncio.sleep(0)  # the end of the iteration: the re-score

    asyncio.run(report_pick_then_settle())
    assert all(state in book.dirty for book in books)
    assert all(state not in scan.dirty for scan in scans)
