"""The same answers whichever way granian calls the app: RSGI (the default,
with the fast path native and the bridge to FastAPI) or ASGI."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from conftest import maxine_server, run_server


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def served(request):
    with run_server(args=["--interface", request.param]) as srv:
        with httpx.Client(base_url=srv.url, timeout=10.0) as client:
            yield request.param, srv, client


def register(client, service, port, **extra):
    r = client.post("/register", json={"serviceName": service, "host": "127.0.0.1", "port": port, **extra})
    assert r.status_code == 200, r.text
    return r.json()["nodeId"]


def test_fast_path_and_bridged_routes_answer_alike(served):
    interface, _, client = served
    node = register(client, f"iface-{interface}", 7001, metadata={"zone": "a"})
    found = client.get("/discover", params={"serviceName": f"iface-{interface}"})
    assert found.status_code == 200 and found.json()["nodeId"] == node
    assert found.headers["content-type"] == "application/json"
    # a route served by FastAPI through the bridge, with a percent-encoded path parameter
    health = client.get("/health/" + node.replace(":", "%3A"))
    assert health.status_code == 200, health.text
    assert health.json()["nodeId"] == node
    missing = client.get("/no-such-route")
    assert missing.status_code == 404 and missing.json() == {"error": "Not found: /no-such-route"}
    assert client.delete("/discover").status_code == 405
    bad = client.post("/heartbeat", content=b"{not json")
    assert bad.status_code == 400 and bad.json() == {"error": "Invalid JSON"}


def test_chunked_bodies_are_read_and_bounded(served):
    interface, _, client = served
    node = register(client, f"chunks-{interface}", 7002)
    ok = client.post("/heartbeat", content=iter([b'{"nodeId":', json.dumps(node).encode(), b"}"]))
    assert ok.status_code == 200, ok.text
    too_large = client.post("/heartbeat", content=iter([b'{"nodeId":"', b"x" * (1 << 20), b'"}']))
    assert too_large.status_code == 413 and too_large.headers["connection"] == "close"
    assert client.post("/heartbeat", json={"nodeId": node}).status_code == 200  # on a new connection
    # a chunked body through the bridge (a FastAPI route that reads JSON)
    restore = client.post("/restore", content=iter([b"[1,", b"2]"]))
    assert restore.status_code == 400 and "nothing was restored" in restore.json()["error"]


def test_an_answer_that_leaves_the_body_unread_closes_the_connection(served):
    """granian keeps or drops such a connection as the timing falls; the answer must say
    which, or a client reusing the connection loses its next request."""
    interface, _, client = served
    node = register(client, f"unread-{interface}", 7003)
    unread = {
        "fast path, GET with a body": client.request("GET", "/discover", params={"serviceName": f"unread-{interface}"},
                                                     content=b"{}"),
        "bridge, no such route": client.post("/no-such-route", content=b"{}"),
        "bridge, wrong method": client.put("/heartbeat", content=b"{}"),
        "bridge, chunked": client.post("/no-such-route", content=iter([b"{", b"}"])),
    }
    for case, answer in unread.items():
        assert answer.headers.get("connection") == "close", (case, answer.status_code, answer.headers)
    assert unread["fast path, GET with a body"].json()["nodeId"] == node
    read = {
        "fast path": client.post("/heartbeat", json={"nodeId": node}),
        "bridge": client.post("/restore", content=b"[1, 2]"),  # a FastAPI route that reads its body
        "no body": client.get("/no-such-route"),
    }
    for case, answer in read.items():
        assert answer.headers.get("connection") != "close", (case, answer.status_code, answer.headers)
    assert read["bridge"].status_code == 400 and read["fast path"].status_code == 200


def test_client_id_header_keys_consistent_hash(served):
    interface, _, client = served
    service = f"hash-{interface}"
    for port in range(7100, 7110):
        register(client, service, port)
    picks = {c: {client.get("/discover", params={"serviceName": service, "loadBalancing": "consistent-hash"},
                            headers={"X-Client-Id": c}).json()["nodeId"] for _ in range(5)}
             for c in ("alice", "bob", "carol", "dave", "erin", "frank")}
    assert all(len(nodes) == 1 for nodes in picks.values()), picks  # the header is the key: stable
    assert len({next(iter(nodes)) for nodes in picks.values()}) > 1  # and it is read: keys spread


def test_server_sent_events_stream(served):
    interface, srv, client = served
    service = f"sse-{interface}"
    with httpx.Client(base_url=srv.url, timeout=10.0) as streamer:
        with streamer.stream("GET", "/events/stream", params={"serviceName": service}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            register(client, service, 7003)
            seen = ""
            for chunk in stream.iter_text():
                seen += chunk
                if service in seen:
                    break
    assert "register" in seen


def test_websocket_subscribe_and_event(served):
    interface, srv, client = served
    service = f"ws-{interface}"

    async def scenario():
        async with websockets.connect(srv.url.replace("http://", "ws://") + "/ws") as ws:
            await ws.send(json.dumps({"subscribe": {"serviceName": service}}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert ack["type"] == "subscribed"
            await ws.send("not json")
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "error", "error": "Invalid JSON"}
            await asyncio.to_thread(register, client, service, 7004)
            event = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert event["serviceName"] == service

    asyncio.run(scenario())
    assert client.get("/health").status_code == 200  # the server outlived the closed socket


def test_dropped_websocket_is_a_disconnect_not_an_error(tmp_path):
    log = tmp_path / "server.log"
    with open(log, "wb") as out, maxine_server(["--log-level", "info"], output=out) as srv:

        async def drop():
            ws = await websockets.connect(srv.url.replace("http://", "ws://") + "/ws")
            ws.transport.abort()  # no close frame
            await asyncio.sleep(0.3)

        asyncio.run(drop())
        assert httpx.post(srv.url + "/register", json={"serviceName": "drop", "host": "127.0.0.1",
                                                       "port": 7005}).status_code == 200
    text = log.read_text()
    assert "granian, RSGI" in text
    assert "Traceback" not in text and "ERROR" not in text, text


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_no_request_is_lost_after_an_unread_body(interface):
    """maxine.bench.unread: large bodies left unread, each followed by a request on the same
    connection (before the fix, a few in a thousand were lost)."""
    from maxine.bench.unread import CASES, run

    results = run(20, {"MAXINE_INTERFACE": interface})
    assert set(results) == set(CASES)
    assert all(lost == 0 and closes == 20 for lost, closes in results.values()), results
