"""The Python clients against a real server."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from conftest import free_port

from maxine.client import AsyncMaxineClient, MaxineClient, MaxineError, ServiceUnavailable


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_register_discover_report_close(server, svc_name):
    with MaxineClient(server.url) as client:
        node = client.register(svc_name, "127.0.0.1", 7001, metadata={"version": "1.0"}, ttl=2)
        found = client.discover(svc_name, load_balancing="least-connections", version="1.0")
        assert found["nodeId"] == node
        client.report(node, 12.5)
        with pytest.raises(ServiceUnavailable):
            client.discover(svc_name, version="9.9")
        with pytest.raises(MaxineError) as bad:
            client.discover(svc_name, load_balancing="nope")
        assert bad.value.status == 400
        # heartbeats keep a 2 s lease alive past its TTL
        time.sleep(2.5)
        assert client.discover(svc_name)["nodeId"] == node
    # closing deregistered it
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/discover", params={"serviceName": svc_name}).status_code == 404


def test_heartbeat_loop_reregisters_after_404(server, svc_name):
    with MaxineClient(server.url) as client, httpx.Client(base_url=server.url) as http:
        node = client.register(svc_name, "127.0.0.1", 7002, ttl=1, heartbeat_interval=0.2)
        # the registry forgets the node (as after a restart): the client registers it again
        http.request("DELETE", "/deregister", json={"nodeId": node})
        wait_for(lambda: http.get("/discover", params={"serviceName": svc_name}).status_code == 200)


def test_explicit_deregister_is_not_undone_by_heartbeats(server, svc_name):
    with MaxineClient(server.url) as client, httpx.Client(base_url=server.url) as http:
        node = client.register(svc_name, "127.0.0.1", 7003, ttl=1, heartbeat_interval=0.1)
        assert client.deregister(node) is True
        time.sleep(0.5)
        assert http.get("/discover", params={"serviceName": svc_name}).status_code == 404


def test_call_reports_latency_and_failures(server, svc_name):
    with MaxineClient(server.url) as client, httpx.Client(base_url=server.url) as http:
        node = client.register(svc_name, "127.0.0.1", 7004)

        def slow_ok(instance):
            time.sleep(0.03)
            return instance["address"]

        assert client.call(svc_name, slow_ok) == "127.0.0.1:7004"
        assert client.flush(timeout=10)  # call() queues its report; the sender thread posts it
        load = http.get(f"/health/{node}").json()["load"]
        assert load["results"] == 1 and load["inFlight"] == 0 and load["latencyEwmaMs"] >= 25

        def broken(instance):
            raise ConnectionError("down")

        with pytest.raises(ConnectionError):
            client.call(svc_name, broken)
        client.flush(timeout=10)
        assert http.get(f"/health/{node}").json()["load"]["failures"] == 1

        class Reply:
            status_code = 503

        client.call(svc_name, lambda inst: Reply())
        client.flush(timeout=10)
        assert http.get(f"/health/{node}").json()["load"]["failures"] == 2


def test_async_client(server, svc_name):
    async def scenario():
        async with AsyncMaxineClient(server.url) as client:
            node = await client.register(svc_name, "127.0.0.1", 7005, ttl=1, heartbeat_interval=0.2)
            await asyncio.sleep(1.5)  # past the TTL: heartbeats kept it
            assert (await client.discover(svc_name))["nodeId"] == node

            async def fn(instance):
                await asyncio.sleep(0.01)
                return 42

            assert await client.call(svc_name, fn, load_balancing="least-response-time") == 42
            await client.flush()
            async with httpx.AsyncClient(base_url=server.url) as http:
                assert (await http.get(f"/health/{node}")).json()["load"]["results"] == 1
            await client.record_call("web", svc_name)
            return node

    asyncio.run(scenario())
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/discover", params={"serviceName": svc_name}).status_code == 404


def test_queued_reports_are_sent_in_batches_and_all_arrive(server, svc_name):
    with MaxineClient(server.url) as client, httpx.Client(base_url=server.url) as http:
        node = client.register(svc_name, "127.0.0.1", 7006, heartbeat=False)
        requests_before = http.get("/metrics").json()["requests"]
        for i in range(300):
            client.report_later(node, 5.0 + i % 7, success=i % 10 != 0)
        assert client.flush(timeout=10)
        load = http.get(f"/health/{node}").json()["load"]
        assert load["results"] == 300 and load["failures"] == 30
        assert http.get("/metrics").json()["requests"] - requests_before < 300  # fewer requests than reports
        assert client.reports_dropped == 0


def test_async_queued_reports_arrive_after_flush(server, svc_name):
    async def scenario():
        async with AsyncMaxineClient(server.url) as client:
            node = await client.register(svc_name, "127.0.0.1", 7007, heartbeat=False)
            for i in range(200):
                client.report_later(node, 3.0)
                if i % 50 == 0:
                    await asyncio.sleep(0)  # let the sender start a batch while more are queued
            await client.flush()
            async with httpx.AsyncClient(base_url=server.url) as http:
                return (await http.get(f"/health/{node}")).json()["load"]["results"], client.reports_dropped

    assert asyncio.run(scenario()) == (200, 0)


def test_reports_the_registry_never_gets_are_counted_as_dropped():
    with MaxineClient(f"http://127.0.0.1:{free_port()}", timeout=1.0) as client:
        client.report_later("orders:127.0.0.1:1", 5.0)
        client.report_later("orders:127.0.0.1:1", 6.0)
        assert client.flush(timeout=10)
        assert client.reports_dropped == 2
