"""The server's opt-in telemetry log: a running server with --telemetry-log
writes segments in the training format, and `maxine train advanced-ml --data
DIR` accepts them; off by default; the in-memory buffer is bounded."""

from __future__ import annotations

import glob
import json
import os
import random
import subprocess
import sys
import time

import httpx
import numpy as np

from conftest import run_server
from maxine.registry import Instance
from maxine.telemetry_recorder import TelemetryRecorder
from maxine.training.telemetry_log import COLUMNS, read_log


def drive(url: str, discoveries: int = 400):
    rng = random.Random(0)
    with httpx.Client(base_url=url, timeout=10.0) as c:
        ids = [c.post("/register", json={"serviceName": "tl", "host": "10.0.0.1", "port": 9000 + i}).json()["nodeId"]
               for i in range(3)]
        for k, nid in enumerate(ids):
            assert c.post("/heartbeat", json={"nodeId": nid, "inFlight": k, "cpu": 0.2 * k, "qps": 5.0,
                                              "latencyMs": 10.0 * (k + 1)}).status_code == 200
        for k in range(discoveries):
            strategy = "advanced-ml" if k % 2 else "round-robin"
            r = c.get("/discover", params={"serviceName": "tl", "loadBalancing": strategy})
            assert r.status_code == 200
            node = r.json()
            lat = 10.0 * (1 + node["port"] - 9000) + rng.random()
            assert c.post("/record-response-time", json={"nodeId": node["nodeId"], "responseTime": lat,
                                                          "success": k % 17 != 0}).status_code == 200
        assert c.post("/record-call", json={"callerService": "web", "calledService": "tl"}).status_code == 200


def test_running_server_writes_a_log_that_train_accepts(tmp_path):
    data = tmp_path / "data"
    env = {"MAXINE_TELEMETRY_LOG": "true", "MAXINE_DATA_DIR": str(data), "MAXINE_TELEMETRY_LOG_FLUSH_S": "0.2",
           "MAXINE_ML": "false"}
    with run_server(env=env) as srv:
        drive(srv.url)
        # rows younger than the 5 s hold are written at shutdown at the latest
    logdir = data / "telemetry"
    segs = glob.glob(str(logdir / "telemetry-*.npz"))
    assert segs, f"no segments in {logdir}: {os.listdir(data) if data.exists() else 'no data dir'}"
    cols = read_log(str(logdir))
    assert all(c in cols for c in COLUMNS)
    kind = cols["kind"]
    assert (kind == 0).sum() == 400            # every discovery
    assert (kind == 1).sum() == 400            # every client report
    assert (kind == 2).sum() == 3              # every load report
    assert (kind == 3).sum() == 1              # the call edge
    disc = kind == 0
    assert np.all(cols["chosen"][disc] == 1)
    assert np.isfinite(cols["latency_ms"][disc]).mean() > 0.99   # discoveries joined with their outcome
    assert np.all(np.diff(cols["now"]) >= 0)   # one run for the trainer
    strategies = set()
    for seg in segs:
        with np.load(seg) as z:
            strategies |= set(z["strategy"].tolist()) - {""}
            meta = json.loads(str(z["__meta__"]))
    assert meta["source"] == "server"
    assert strategies <= {"advanced-ml", "round-robin"} and strategies
    out = subprocess.run([sys.executable, "-m", "maxine", "train", "advanced-ml", "--data", str(logdir),
                          "--epochs", "2", "--out", str(tmp_path / "models"), "--version", "t1", "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "models" / "advanced-ml" / "t1" / "metadata.json").read_text())
    assert meta["data"]["rows"] >= 390  # decisions only, not reports/heartbeats/edges


def test_off_by_default(tmp_path):
    data = tmp_path / "data"
    with run_server(env={"MAXINE_DATA_DIR": str(data), "MAXINE_ML": "false"}) as srv:
        drive(srv.url, discoveries=20)
    assert not (data / "telemetry").exists()


def test_buffer_is_bounded_and_writes_are_bounded_on_disk(tmp_path):
    rec = TelemetryRecorder(str(tmp_path / "t"), max_mb=0.05, hold_s=0.0, max_buffer=1000)
    node = Instance("s", "h", 1, {}, 1e9, 0.0)
    for k in range(1500):
        rec.discovery(float(k), node, "advanced-ml")
    assert len(rec.buf) == 1000 and rec.dropped == 500
    t0 = time.perf_counter()
    for _ in range(20):
        rec.write(rec.take(), final=True)
        for k in range(1000):
            rec.discovery(float(k), node, "advanced-ml")
    assert time.perf_counter() - t0 < 30
    total = sum(os.path.getsize(p) for p in glob.glob(str(tmp_path / "t" / "*.npz")))
    assert total <= 0.05 * 2 ** 20 + 64 * 1024  # the newest segment is always kept
    assert rec.writer.segments_written == 20 and len(glob.glob(str(tmp_path / "t" / "*.npz"))) < 20
