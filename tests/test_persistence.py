"""File persistence: kill -9 under load, lease deadlines across restarts, torn journal tails."""

from __future__ import annotations

import glob
import os
import random
import signal
import threading
import time

import httpx
import pytest

from conftest import run_server

pytestmark = pytest.mark.timeout(90)


def file_env(data_dir, **extra) -> dict:
    env = {"MAXINE_PERSISTENCE": "file", "MAXINE_DATA_DIR": str(data_dir), "MAXINE_FSYNC": "always"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def kill9(server) -> None:
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def nodes_of(url) -> dict:
    return {r["serviceName"] + ":" + r["host"] + ":" + str(r["port"]): r
            for r in httpx.get(url + "/backup", timeout=10).json()["instances"]}


def test_kill_9_under_load_loses_no_acknowledged_change(tmp_path):
    """Writers register/deregister their own nodes; each node's last acknowledged
    state must be what the restarted server holds (an unanswered request may go either way)."""
    acked: dict[str, bool] = {}       # node -> registered? per the last acknowledged response
    uncertain: set[str] = set()       # a request for this node got no answer
    stop = threading.Event()
    counts = {"ok": 0}

    with run_server(env=file_env(tmp_path)) as srv:
        def writer(w: int):
            rng = random.Random(w)
            ports = list(range(10000 + w * 50, 10000 + w * 50 + 50))
            with httpx.Client(base_url=srv.url, timeout=5) as client:
                while not stop.is_set():
                    port = rng.choice(ports)
                    node = f"load-{w}:127.0.0.1:{port}"
                    if node in uncertain:
                        continue
                    register = not acked.get(node, False) or rng.random() < 0.3
                    try:
                        if register:
                            r = client.post("/register", json={"serviceName": f"load-{w}", "host": "127.0.0.1",
                                                                "port": port, "ttl": 3600,
                                                                "metadata": {"version": str(rng.randint(1, 5))}})
                        else:
                            r = client.request("DELETE", "/deregister", json={"nodeId": node})
                    except httpx.HTTPError:
                        uncertain.add(node)
                        return
                    if r.status_code != 200:
                        uncertain.add(node)
                        return
                    acked[node] = register
                    counts["ok"] += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        time.sleep(2.5)
        kill9(srv)  # mid-load, no warning
        stop.set()
        for t in threads:
            t.join(10)
    assert counts["ok"] > 200, counts
    with run_server(env=file_env(tmp_path)) as srv:
        held = nodes_of(srv.url)
    mismatches = [n for n, registered in acked.items() if n not in uncertain and (n in held) != registered]
    assert not mismatches, mismatches[:10]
    assert len(held) > 10
    extra = [n for n in held if n not in acked and n not in uncertain]
    assert not extra, extra[:10]


def test_restart_keeps_lease_deadlines(tmp_path):
    env = file_env(tmp_path, MAXINE_RESTART_GRACE=0.5, MAXINE_FSYNC_INTERVAL=0.2)
    with run_server(env=env) as srv:
        c = httpx.Client(base_url=srv.url, timeout=5)
        # "short" must pass its deadline while the server is down; the others must outlive a restart
        # (which takes a few seconds on a loaded machine).
        for name, ttl in (("long", 3600), ("short", 2), ("mid", 60), ("beat", 30)):
            assert c.post("/register", json={"serviceName": name, "host": "127.0.0.1", "port": 1, "ttl": ttl}).status_code == 200
        time.sleep(1.0)
        assert c.post("/heartbeat", json={"nodeId": "beat:127.0.0.1:1"}).status_code == 200
        before = nodes_of(srv.url)
        time.sleep(0.6)  # renewals are flushed every fsync-interval (0.2 s here)
        kill9(srv)
        c.close()
    time.sleep(1.0)  # "short" passes its deadline while the server is down
    with run_server(env=env) as srv:
        after = nodes_of(srv.url)
        assert after["long:127.0.0.1:1"]["deadline"] == pytest.approx(before["long:127.0.0.1:1"]["deadline"], abs=1e-3)
        assert after["mid:127.0.0.1:1"]["deadline"] == pytest.approx(before["mid:127.0.0.1:1"]["deadline"], abs=1e-3)
        # the heartbeat's deadline, not the registration's
        assert after["beat:127.0.0.1:1"]["deadline"] == pytest.approx(before["beat:127.0.0.1:1"]["deadline"], abs=1e-3)
        time.sleep(0.6)
        assert httpx.get(srv.url + "/services/short").status_code == 404  # expired while we were down
        events = httpx.get(srv.url + "/events", params={"since": 0, "serviceName": "short"}).json()["events"]
        assert [e["event"] for e in events] == ["service_expired"]
        assert httpx.get(srv.url + "/services/long").status_code == 200
        view = httpx.get(srv.url + "/services/mid").json()["instances"][0]
        assert view["leaseExpiresAt"] == pytest.approx(before["mid:127.0.0.1:1"]["deadline"] * 1000, abs=1)
    with run_server(env=env) as srv:  # and once more, after a clean shutdown
        again = nodes_of(srv.url)
        assert again["long:127.0.0.1:1"]["deadline"] == pytest.approx(before["long:127.0.0.1:1"]["deadline"], abs=1e-3)
        assert "short:127.0.0.1:1" not in again


def test_grace_window_lets_live_instances_heartbeat(tmp_path):
    env = file_env(tmp_path, MAXINE_RESTART_GRACE=20)
    with run_server(env=env) as srv:
        assert httpx.post(srv.url + "/register", json={"serviceName": "g", "host": "127.0.0.1", "port": 1,
                                                        "ttl": 8}).status_code == 200
        registered = time.monotonic()
        kill9(srv)
    with run_server(env=env) as srv:
        assert time.monotonic() - registered < 8, "restart too slow for this test's lease"
        time.sleep(max(0.0, registered + 8.5 - time.monotonic()))  # its lease ran out after the restart, inside the grace
        assert httpx.get(srv.url + "/services/g").status_code == 200
        assert httpx.post(srv.url + "/heartbeat", json={"nodeId": "g:127.0.0.1:1"}).status_code == 200


def test_corrupt_journal_tail_is_skipped(tmp_path):
    env = file_env(tmp_path)
    with run_server(env=env) as srv:
        for port in range(1, 6):
            assert httpx.post(srv.url + "/register", json={"serviceName": "c", "host": "127.0.0.1", "port": port,
                                                            "ttl": 3600}).status_code == 200
    journal = sorted(glob.glob(str(tmp_path / "journal-*.log")))[-1]
    size = os.path.getsize(journal)
    with open(journal, "r+b") as f:  # tear the last record in half
        f.truncate(size - 20)
    with run_server(env=env) as srv:
        held = nodes_of(srv.url)
        assert sorted(held) == [f"c:127.0.0.1:{p}" for p in range(1, 5)]
        assert httpx.post(srv.url + "/register", json={"serviceName": "c", "host": "127.0.0.1", "port": 9,
                                                        "ttl": 3600}).status_code == 200
    assert glob.glob(str(tmp_path / "journal-*.log.corrupt-*"))
    with open(sorted(glob.glob(str(tmp_path / "journal-*.log")))[-1], "ab") as f:  # garbage after good records
        f.write(b"\x10\x00\x00\x00\xde\xad\xbe\xefnot-a-record!!!!")
    with run_server(env=env) as srv:
        held = nodes_of(srv.url)
        assert sorted(held) == sorted([f"c:127.0.0.1:{p}" for p in range(1, 5)] + ["c:127.0.0.1:9"])
        assert httpx.post(srv.url + "/register", json={"serviceName": "c", "host": "127.0.0.1", "port": 10,
                                                        "ttl": 3600}).status_code == 200
    with run_server(env=env) as srv:
        assert len(nodes_of(srv.url)) == 6


def test_snapshot_then_journal(tmp_path):
    env = file_env(tmp_path, MAXINE_SNAPSHOT_INTERVAL=0.5, MAXINE_FSYNC="interval", MAXINE_FSYNC_INTERVAL=0.2)
    with run_server(env=env) as srv:
        for port in range(1, 4):
            httpx.post(srv.url + "/register", json={"serviceName": "s", "host": "127.0.0.1", "port": port, "ttl": 3600})
        time.sleep(1.2)  # a snapshot is taken and older journals dropped
        assert os.path.exists(tmp_path / "snapshot.json")
        httpx.request("DELETE", srv.url + "/deregister", json={"nodeId": "s:127.0.0.1:1"})
        httpx.post(srv.url + "/register", json={"serviceName": "s", "host": "127.0.0.1", "port": 4, "ttl": 3600})
        index = httpx.get(srv.url + "/events").json()["lastId"]
        kill9(srv)
    with run_server(env=env) as srv:
        assert sorted(nodes_of(srv.url)) == [f"s:127.0.0.1:{p}" for p in (2, 3, 4)]
        r = httpx.get(srv.url + "/services/s")
        assert int(r.headers["X-Maxine-Index"]) == index  # indexes survive, so blocking clients stay correct
        assert httpx.get(srv.url + "/health").json()["store"]["healthy"] is True


def test_a_sweep_batch_of_expiries_is_journaled_with_one_fsync(tmp_path, monkeypatch):
    import asyncio

    from conftest import ManualClock
    from maxine.persistence.file import FileStore
    from maxine.registry import Registry

    clock = ManualClock(0.0)
    registry = Registry(default_ttl=5.0, clock=clock)
    store = FileStore(registry, str(tmp_path), fsync="always")
    store.load()
    store.open()
    for port in range(1, 51):
        registry.register("svc", "h", port)
    fsyncs = []
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd))
    clock.t = 6.0
    due = list(registry.leases.pop_due(clock.t, lambda i: True, 100))
    assert asyncio.run(store.expire(due)) == 50
    assert len(fsyncs) == 1 and not store.writer.dirty
    store.close()
    assert FileStore(registry, str(tmp_path)).load()["instances"] == []
