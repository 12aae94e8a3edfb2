"""Leases: deadlines checked at read time, swept within a second, no full scans."""

from __future__ import annotations

from functools import partial
import time

import httpx
import orjson

from conftest import ManualClock
from maxine.registry import EXPIRED, REGISTERED, UPDATED, Registry


Clock = partial(ManualClock, 0.0)


def test_expired_instance_is_never_returned_before_the_sweep():
    clock = Clock()
    registry = Registry(default_ttl=10.0, clock=clock)
    registry.register("svc", "h", 1)
    registry.register("svc", "h", 2, ttl=20.0)
    clock.t = 15.0
    # no sweep has run; the pool is rebuilt on demand and the read checks deadlines
    assert registry.get("svc:h:1") is None
    assert [i.port for i in registry.live_instances("svc")] == [2]


def test_a_late_heartbeat_renews_a_lease_the_sweeper_has_not_expired():
    """Only the sweeper decides expiries (self-preservation, Redis's exactly-once):
    a heartbeat that arrives after the deadline but before the sweep renews."""
    from maxine.api import Maxine

    clock = Clock()
    maxine = Maxine(registry=Registry(default_ttl=10.0, clock=clock), clock=clock)
    registry = maxine.registry
    changes = []
    registry.listeners.append(changes.append)
    registry.register("svc", "h", 1)
    assert maxine.discover(b"serviceName=svc")[0] == 200  # pool cached
    clock.t = 11.0
    assert maxine.discover(b"serviceName=svc")[0] == 404  # passed: not served
    assert registry.heartbeat("svc:h:1") is not None
    assert registry.nodes["svc:h:1"].deadline == 21.0
    assert maxine.discover(b"serviceName=svc")[0] == 200  # served again
    assert [c.kind for c in changes] == [REGISTERED]  # no expiry, no re-registration
    clock.t = 22.0
    assert registry.sweep() == 1  # the sweeper still expires it once the new lease passes
    assert registry.heartbeat("svc:h:1") is None  # expired: must register again


def test_a_late_re_register_refreshes_the_same_instance():
    clock = Clock()
    registry = Registry(default_ttl=10.0, clock=clock)
    changes = []
    registry.listeners.append(changes.append)
    first = registry.register("svc", "h", 1, {"version": "1"})
    clock.t = 11.0
    again = registry.register("svc", "h", 1, {"version": "2"})
    assert again is first and again.version == "2" and again.deadline == 21.0
    assert [c.kind for c in changes] == [REGISTERED, UPDATED]
    assert registry.sweep() == 0


def test_discovery_skips_an_expired_instance_in_a_cached_pool():
    from maxine.api import Maxine

    clock = Clock()
    maxine = Maxine(registry=Registry(default_ttl=10.0, clock=clock), clock=clock)
    maxine.registry.register("svc", "h", 1)
    maxine.registry.register("svc", "h", 2, ttl=20.0)
    assert maxine.discover(b"serviceName=svc")[0] == 200  # pool now cached with both
    clock.t = 15.0
    picks = {orjson.loads(maxine.discover(b"serviceName=svc")[1])["port"] for _ in range(10)}
    assert picks == {2}
    clock.t = 25.0
    assert maxine.discover(b"serviceName=svc")[0] == 404


def test_a_cached_query_sees_every_change_to_its_service():
    """A query keeps its pool until the service changes (Pool.stale)."""
    from maxine.api import Maxine

    clock = Clock()
    maxine = Maxine(registry=Registry(default_ttl=10.0, clock=clock), clock=clock)
    registry = maxine.registry

    def ports(query=b"serviceName=svc"):
        answers = [maxine.discover(query) for _ in range(6)]
        return {orjson.loads(body)["port"] for status, body in answers if status == 200} or None

    registry.register("svc", "h", 1)
    assert ports() == {1}
    kept = registry.pool("svc")
    registry.register("svc", "h", 2)
    assert kept.stale and kept.nodes == () and not kept.cache  # holds nothing for a query never sent again
    assert ports() == {1, 2}
    registry.deregister("svc:h:1")
    assert ports() == {2}
    registry.register("svc", "h", 3, metadata={"tags": ["blue"]})
    assert ports(b"serviceName=svc&tags=blue") == {3}
    registry.register("svc", "h", 2, metadata={"tags": ["blue"]})  # a metadata change
    assert ports(b"serviceName=svc&tags=blue") == {2, 3}
    registry.deregister("svc:h:2")
    registry.deregister("svc:h:3")
    assert ports() is None and ports(b"serviceName=svc&tags=blue") is None  # the service is gone
    registry.register("svc", "h", 4)  # and back, as a new Service
    assert ports() == {4}


def test_discovery_leaves_expiry_to_the_sweeper_and_serves_a_held_lease_again():
    from maxine.api import Maxine

    clock = Clock()
    maxine = Maxine(registry=Registry(default_ttl=10.0, clock=clock), clock=clock)
    registry = maxine.registry
    registry.register("svc", "h", 1)
    registry.register("svc", "h", 2)
    assert maxine.discover(b"serviceName=svc")[0] == 200
    clock.t = 11.0
    assert maxine.discover(b"serviceName=svc")[0] == 404
    assert len(registry.nodes) == 2  # not expired by a read: the sweeper decides
    registry.set_deadline(registry.nodes["svc:h:1"], 20.0)  # e.g. held by self-preservation
    picks = {orjson.loads(maxine.discover(b"serviceName=svc")[1])["port"] for _ in range(6)}
    assert picks == {1}


def test_sweep_only_touches_due_leases():
    clock = Clock()
    registry = Registry(default_ttl=30.0, clock=clock)
    changes = []
    registry.listeners.append(changes.append)
    for port in range(1, 1001):
        registry.register("svc", "h", port, ttl=30.0 if port % 10 else 5.0)
    clock.t = 6.0
    assert registry.sweep(limit=10_000) == 100
    assert [c.kind for c in changes[-100:]] == [EXPIRED] * 100
    assert len(registry.nodes) == 900
    assert registry.next_deadline() == 30.0  # heap now only holds the live leases
    # heartbeats move deadlines without growing the heap
    for _ in range(5):
        for port in range(1, 1001):
            registry.heartbeat(f"svc:h:{port}")
    assert len(registry.leases) == 900


def test_heartbeat_extends_and_sweep_refiles():
    clock = Clock()
    registry = Registry(default_ttl=10.0, clock=clock)
    registry.register("svc", "h", 1)
    clock.t = 8.0
    registry.heartbeat("svc:h:1")
    clock.t = 12.0
    assert registry.sweep() == 0  # the old entry was re-filed at 18
    assert registry.get("svc:h:1") is not None
    clock.t = 18.5
    assert registry.sweep() == 1


def test_sweep_batches_are_bounded():
    clock = Clock()
    registry = Registry(default_ttl=1.0, clock=clock)
    for port in range(1, 2501):
        registry.register("svc", "h", port)
    clock.t = 2.0
    assert registry.sweep(limit=1000) == 1000
    assert registry.sweep(limit=1000) == 1000
    assert registry.sweep(limit=1000) == 500


def test_lease_expiry_over_http(server, svc_name):
    with httpx.Client(base_url=server.url) as http:
        node = http.post("/register", json={"serviceName": svc_name, "host": "h", "port": 1, "ttl": 1}).json()["nodeId"]
        registered = time.monotonic()
        assert http.get("/discover", params={"serviceName": svc_name}).status_code == 200
        while http.get("/discover", params={"serviceName": svc_name}).status_code == 200:
            assert time.monotonic() - registered < 1.3, "served after its lease passed"
            time.sleep(0.02)
        gone_at = time.monotonic() - registered
        assert gone_at >= 0.95
        # the sweep removes it from the listings within a second of the deadline
        deadline = time.monotonic() + 1.0
        while svc_name in http.get("/servers").json()["services"]:
            assert time.monotonic() < deadline, "sweep did not remove the instance within 1 s"
            time.sleep(0.02)
        assert http.post("/heartbeat", json={"nodeId": node}).status_code == 404


def test_heartbeats_keep_a_lease_alive(server, svc_name):
    with httpx.Client(base_url=server.url) as http:
        node = http.post("/register", json={"serviceName": svc_name, "host": "h", "port": 1, "ttl": 1}).json()["nodeId"]
        for _ in range(8):
            time.sleep(0.3)
            assert http.post("/heartbeat", json={"nodeId": node}).status_code == 200
        assert http.get("/discover", params={"serviceName": svc_name}).status_code == 200
