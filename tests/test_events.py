"""Change events: history, SSE resume, blocking queries, WebSocket, backup/restore."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import orjson
import pytest

from events_helpers import SSE

pytestmark = pytest.mark.timeout(60)


def reg(http, name, port, ttl=300, **meta):
    r = http.post("/register", json={"serviceName": name, "host": "127.0.0.1", "port": port, "ttl": ttl,
                                      "metadata": meta})
    assert r.status_code == 200, r.text
    return r.json()["nodeId"]


def dereg(http, node_id):
    r = http.request("DELETE", "/deregister", json={"nodeId": node_id})
    assert r.status_code == 200, r.text


def test_events_carry_the_diff(http, svc_name):
    since = http.get("/events", params={"since": 10**9}).json()["lastId"]
    node = reg(http, svc_name, 9001, version="1.0")
    reg(http, svc_name, 9001, version="1.1")
    dereg(http, node)
    body = http.get("/events", params={"since": since, "serviceName": svc_name}).json()
    kinds = [e["event"] for e in body["events"]]
    assert kinds == ["service_registered", "service_updated", "service_deregistered"]
    reg_ev, upd, gone = body["events"]
    assert reg_ev["data"]["before"] is None and reg_ev["data"]["after"]["metadata"] == {"version": "1.0"}
    assert upd["data"]["before"]["metadata"]["version"] == "1.0"
    assert upd["data"]["after"]["metadata"]["version"] == "1.1"
    assert gone["data"]["after"] is None and gone["nodeId"] == node
    ids = [e["id"] for e in body["events"]]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert body["complete"] is True
    limited = http.get("/events", params={"since": since, "serviceName": svc_name, "limit": 2}).json()
    assert [e["id"] for e in limited["events"]] == ids[:2]
    assert http.get("/events", params={"since": "x"}).status_code == 400


def test_sse_resume_without_loss_or_repeat(server, http, svc_name):
    other = svc_name + "-other"
    url = f"{server.url}/events/stream?serviceName={svc_name}"
    stream = SSE(url)
    seen = []
    try:
        for port in range(9100, 9105):
            reg(http, svc_name, port)
            reg(http, other, port)  # filtered out
        for _ in range(5):
            seen.append(stream.next())
    finally:
        stream.close()
    last_id = seen[-1]["id"]
    # while disconnected: more changes, for both services
    reg(http, svc_name, 9105)
    dereg(http, f"{svc_name}:127.0.0.1:9100")
    reg(http, other, 9199)
    reg(http, svc_name, 9100, version="2")
    stream = SSE(url, headers={"Last-Event-ID": last_id})
    try:
        reg(http, svc_name, 9106)  # live again after the resume
        for _ in range(4):
            seen.append(stream.next())
    finally:
        stream.close()
    ids = [int(f["id"]) for f in seen]
    assert ids == sorted(ids) and len(ids) == len(set(ids)), ids
    expected = http.get("/events", params={"since": 0, "serviceName": svc_name, "limit": 10000}).json()["events"]
    assert [e["id"] for e in expected] == ids
    assert [f["event"] for f in seen[5:]] == ["service_registered", "service_deregistered",
                                              "service_registered", "service_registered"]
    data = orjson.loads(seen[6]["data"])
    assert data["nodeId"] == f"{svc_name}:127.0.0.1:9100" and data["data"]["before"] is not None


def test_blocking_query_wakes_only_for_its_service(server, http, svc_name):
    other = svc_name + "-noise"
    reg(http, svc_name, 9200)
    reg(http, other, 9200)
    first = http.get(f"/services/{svc_name}")
    index = int(first.headers["X-Maxine-Index"])
    assert first.json()["index"] == index
    result = {}

    def blocked():
        t0 = time.monotonic()
        r = httpx.get(f"{server.url}/services/{svc_name}", params={"index": index, "wait": "20s"}, timeout=30)
        result.update(status=r.status_code, index=int(r.headers["X-Maxine-Index"]), body=r.json(),
                      elapsed=time.monotonic() - t0, at=time.monotonic())

    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(0.3)
    for port in range(9201, 9211):  # unrelated writes wake nobody
        reg(http, other, port)
    time.sleep(0.5)
    assert not result, result
    woke_at = time.monotonic()
    reg(http, svc_name, 9201)
    t.join(10)
    assert result["status"] == 200 and result["index"] > index
    assert result["at"] - woke_at < 0.5
    assert len(result["body"]["instances"]) == 2
    # no change past the index: returns after wait (plus at most wait/16 jitter)
    t0 = time.monotonic()
    r = http.get(f"/services/{svc_name}", params={"index": result["index"], "wait": "400ms"})
    elapsed = time.monotonic() - t0
    assert r.status_code == 200 and 0.38 <= elapsed < 1.0
    assert int(r.headers["X-Maxine-Index"]) == result["index"]
    # a stale index returns at once
    t0 = time.monotonic()
    assert http.get(f"/services/{svc_name}", params={"index": index, "wait": "10s"}).status_code == 200
    assert time.monotonic() - t0 < 0.5
    assert http.get(f"/services/{svc_name}", params={"index": "-1"}).status_code == 400
    assert http.get(f"/services/{svc_name}", params={"index": 1, "wait": "soon"}).status_code == 400


def test_blocking_query_sees_last_instance_leave(server, http, svc_name):
    node = reg(http, svc_name, 9300)
    index = int(http.get(f"/services/{svc_name}").headers["X-Maxine-Index"])
    threading.Timer(0.3, lambda: dereg(httpx.Client(base_url=server.url), node)).start()
    r = http.get(f"/services/{svc_name}", params={"index": index, "wait": "10s"})
    assert r.status_code == 404 and int(r.headers["X-Maxine-Index"]) > index


def test_websocket_subscribe_and_unsubscribe(server, http, svc_name):
    websockets = pytest.importorskip("websockets")

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=5) as ws:
            await ws.send(orjson.dumps({"subscribe": {"serviceName": svc_name, "event": "service_registered"}}).decode())
            ack = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            assert ack["type"] == "subscribed"
            await asyncio.to_thread(reg, http, svc_name + "-x", 9400)      # other service: filtered
            node = await asyncio.to_thread(reg, http, svc_name, 9400)
            await asyncio.to_thread(dereg, http, node)                      # other event kind: filtered
            await asyncio.to_thread(reg, http, svc_name, 9401)
            got = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
            assert [g["nodeId"] for g in got] == [node, f"{svc_name}:127.0.0.1:9401"]
            assert all(g["event"] == "service_registered" for g in got)
            await ws.send('{"unsubscribe": true}')
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "unsubscribed"
            await asyncio.to_thread(reg, http, svc_name, 9402)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)
            await ws.send("not json")
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "error"

    asyncio.run(run())


def test_bad_restore_document_is_refused_whole(http, svc_name):
    reg(http, svc_name, 9500)
    before = http.get("/backup").json()
    good = dict(before)
    bad_instances = list(before["instances"]) + [
        {"serviceName": svc_name + "-new", "host": "127.0.0.1", "port": 9501, "ttl": 30, "deadline": time.time() + 30},
        {"serviceName": "bad name!", "host": "127.0.0.1", "port": 70000, "ttl": 30, "deadline": "tomorrow"},
    ]
    r = http.post("/restore", json={**good, "instances": bad_instances})
    assert r.status_code == 400
    details = r.json()["details"]
    assert any("serviceName" in d for d in details) and any("port" in d for d in details)
    assert any("deadline" in d for d in details)
    after = http.get("/backup").json()
    assert sorted(map(orjson.dumps, after["instances"])) == sorted(map(orjson.dumps, before["instances"]))
    assert http.get(f"/services/{svc_name}-new").status_code == 404
    assert http.post("/restore", content=b"{not json").status_code == 400
    assert http.post("/restore", json=[1, 2]).status_code == 400
    assert http.post("/restore", json={**good, "format": "other"}).status_code == 400
    # a valid document replaces the state
    doc = {**good, "instances": [{"serviceName": svc_name, "host": "127.0.0.1", "port": 9502, "ttl": 60,
                                  "deadline": time.time() + 60, "metadata": {"version": "3"}}]}
    r = http.post("/restore", json=doc)
    assert r.status_code == 200, r.text
    nodes = [i["nodeId"] for i in http.get(f"/services/{svc_name}").json()["instances"]]
    assert nodes == [f"{svc_name}:127.0.0.1:9502"]
    assert [i["serviceName"] for i in http.get("/backup").json()["instances"]] == [svc_name]
