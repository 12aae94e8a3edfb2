"""Redis mode: two replicas sharing one registry through a real Redis.

The first tests use the machine's Redis (127.0.0.1:6379) under a private key
prefix, deleted afterwards; the outage test starts its own throwaway
redis-server on a free port so it can stop and restart it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid

import httpx
import pytest

from conftest import run_server
from events_helpers import ThrowawayRedis

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.timeout(90)
SHARED = "redis://127.0.0.1:6379/0"


def _shared_redis_or_skip():
    try:
        redis.Redis.from_url(SHARED, socket_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({exc}); start it with: redis-server --daemonize yes "
                    "--bind 127.0.0.1 --port 6379 --save '' --appendonly no")


@contextlib.contextmanager
def prefix_on(url: str):
    prefix = f"maxine-test-{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        with contextlib.suppress(redis.RedisError):
            client = redis.Redis.from_url(url, socket_timeout=2)
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.delete(*keys)


def replica_env(url: str, prefix: str, **extra) -> dict:
    env = {"MAXINE_PERSISTENCE": "redis", "MAXINE_REDIS_URL": url, "MAXINE_REDIS_PREFIX": prefix,
           "MAXINE_SWEEP_INTERVAL": "0.1", "MAXINE_RESTART_GRACE": "0",
           "MAXINE_SELF_PRESERVATION_THRESHOLD": "0"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def wait_until(predicate, timeout: float, step: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def register(url, name, port, ttl=60, **meta):
    return httpx.post(url + "/register", json={"serviceName": name, "host": "127.0.0.1", "port": port, "ttl": ttl,
                                                "metadata": meta}, timeout=5)


@pytest.fixture(scope="module")
def replicas():
    _shared_redis_or_skip()
    with prefix_on(SHARED) as prefix:
        with run_server(env=replica_env(SHARED, prefix)) as a, run_server(env=replica_env(SHARED, prefix)) as b:
            yield a, b, prefix


def test_register_on_one_discover_on_the_other(replicas):
    a, b, _ = replicas
    lags = []
    with httpx.Client(base_url=a.url) as ca, httpx.Client(base_url=b.url) as cb:
        for port in range(20000, 20010):
            body = {"serviceName": "orders", "host": "127.0.0.1", "port": port, "metadata": {"version": "1"}}
            assert ca.post("/register", json=body).status_code == 200
            t0 = time.monotonic()
            seen = wait_until(lambda: any(i["port"] == port for i in
                                          cb.get("/services/orders").json().get("instances", [])), 2.0, 0)
            lags.append(time.monotonic() - t0)
            assert seen
    assert sorted(lags)[-2] < 0.1, lags  # typically ~1-2 ms; one slow outlier tolerated on a busy machine
    assert httpx.get(b.url + "/discover", params={"serviceName": "orders"}).status_code == 200
    # metadata update and deregistration the other way round
    assert register(b.url, "orders", 20000, version="2").status_code == 200
    assert wait_until(lambda: [i for i in httpx.get(a.url + "/services/orders").json()["instances"]
                               if i["port"] == 20000][0]["metadata"] == {"version": "2"}, 1.0)
    assert httpx.request("DELETE", b.url + "/deregister", json={"nodeId": "orders:127.0.0.1:20001"}).status_code == 200
    assert wait_until(lambda: all(i["port"] != 20001 for i in httpx.get(a.url + "/services/orders").json()["instances"]), 1.0)
    kinds = [e["event"] for e in httpx.get(a.url + "/events", params={"nodeId": "orders:127.0.0.1:20000"}).json()["events"]]
    assert kinds == ["service_registered", "service_updated"]


def test_heartbeats_on_one_replica_keep_the_lease_on_both(replicas):
    a, b, _ = replicas
    assert register(a.url, "beats", 1, ttl=1.5).status_code == 200
    for _ in range(8):  # heartbeats go to B only, with a load report
        time.sleep(0.3)
        assert httpx.post(b.url + "/heartbeat", json={"nodeId": "beats:127.0.0.1:1", "inFlight": 7}).status_code == 200
    time.sleep(0.3)
    view = httpx.get(a.url + "/services/beats").json()["instances"][0]
    assert view["healthy"] and view["load"]["reported"]["inFlight"] == 7
    assert httpx.request("DELETE", a.url + "/deregister", json={"nodeId": "beats:127.0.0.1:1"}).status_code == 200


def test_a_lease_expires_exactly_once(replicas):
    a, b, prefix = replicas
    client = redis.Redis.from_url(SHARED)
    before = int(client.get(f"{prefix}:expiries") or 0)
    for port in range(1, 6):
        assert register(a.url, "mortal", port, ttl=1).status_code == 200
    node = "mortal:127.0.0.1:3"
    assert wait_until(lambda: httpx.get(a.url + "/services/mortal").status_code == 404
                      and httpx.get(b.url + "/services/mortal").status_code == 404, 5.0, 0.05)
    time.sleep(0.3)
    assert int(client.get(f"{prefix}:expiries")) - before == 5
    decided = sum(httpx.get(s.url + "/health").json()["store"]["expiriesDecidedHere"] for s in (a, b))
    assert decided == 5  # each expiry decided by one replica
    for srv in (a, b):
        kinds = [e["event"] for e in httpx.get(srv.url + "/events", params={"nodeId": node}).json()["events"]]
        assert kinds == ["service_registered", "service_expired"], (srv.url, kinds)


def test_redis_stopped_and_restarted(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (needed to run a throwaway Redis)")
    server = ThrowawayRedis().start()
    try:
        with prefix_on(server.url) as prefix, \
                run_server(env=replica_env(server.url, prefix)) as a, run_server(env=replica_env(server.url, prefix)) as b:
            assert register(a.url, "steady", 1, ttl=30).status_code == 200
            assert wait_until(lambda: httpx.get(b.url + "/services/steady").status_code == 200, 1.0)
            server.stop()
            time.sleep(0.2)
            # discovery keeps answering from the local copy
            assert httpx.get(a.url + "/discover", params={"serviceName": "steady"}).status_code == 200
            assert httpx.get(b.url + "/discover", params={"serviceName": "steady"}).status_code == 200
            r = wait_until(lambda: (lambda r: r if r.status_code == 503 else None)(register(b.url, "new", 2)), 3.0, 0.1)
            assert r is not None and r.status_code == 503 and "Redis" in r.json()["error"]
            health = httpx.get(a.url + "/health").json()
            assert wait_until(lambda: httpx.get(a.url + "/health").json()["status"] == "degraded", 3.0, 0.1)
            assert health["store"]["type"] == "redis"
            assert httpx.post(b.url + "/heartbeat", json={"nodeId": "steady:127.0.0.1:1"}).status_code == 200
            server.start()  # same port, empty: the replicas re-seed it from their copies
            assert wait_until(lambda: register(b.url, "new", 2).status_code == 200, 5.0, 0.1)
            assert wait_until(lambda: httpx.get(a.url + "/services/new").status_code == 200, 2.0)
            assert httpx.get(a.url + "/health").json()["status"] == "ok"
            assert httpx.get(b.url + "/services/steady").status_code == 200
            stored = redis.Redis.from_url(server.url).hkeys(f"{prefix}:inst")
            assert sorted(stored) == [b"new:127.0.0.1:2", b"steady:127.0.0.1:1"]
    finally:
        server.stop()
