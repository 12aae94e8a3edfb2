"""The anomaly and forecast models against a running server: listed in GET /models,
a promoted version picked up without a restart, a corrupt one refused while the
previous keeps serving and the ML endpoints keep answering."""

from __future__ import annotations

import shutil

import httpx
import numpy as np

from conftest import run_server
from maxine.models import artifacts
from tests.test_learned_reload import wait_for

SHIPPED = artifacts.default_root()
MODELS = ("anomaly", "forecast")


def status_of(client, name):
    return next(m for m in client.get("/models").json()["models"] if m.get("name") == name)


def copy_version(root, model, version):
    """A new version with the shipped weights (written as `maxine train` writes them)."""
    src = SHIPPED / model / "v1"
    loaded = artifacts.load_artifact(src)
    with np.load(src / artifacts.WEIGHTS) as z:
        arrays = {k: z[k] for k in z.files}
    return artifacts.write_artifact(root, model, version, arrays, dict(loaded.metadata))


def test_promote_hot_reloads_and_corrupt_is_refused(tmp_path):
    root = tmp_path / "models"
    for model in MODELS:
        shutil.copytree(SHIPPED / model / "v1", root / model / "v1")
        artifacts.promote(root, model, "v1")
    env = {"MAXINE_MODELS_DIR": str(root), "MAXINE_MODELS_WATCH_S": "0.2", "MAXINE_ML_SAMPLE_S": "0.2"}
    with run_server(env=env) as srv, httpx.Client(base_url=srv.url, timeout=10.0) as client:
        ids = [client.post("/register", json={"serviceName": "svc", "host": "127.0.0.1", "port": 7000 + i}).json()
               ["nodeId"] for i in range(3)]
        for nid in ids:
            client.post("/heartbeat", json={"nodeId": nid, "inFlight": 1, "cpu": 0.5, "qps": 10, "latencyMs": 50})
            client.post("/record-response-time", json={"nodeId": nid, "responseTime": 60.0, "success": True})
        for model in MODELS:
            st = wait_for(lambda: (s := status_of(client, model)).get("version") == "v1" and s)
            assert st["fallbackActive"] is False and st["lastError"] is None and "numpy-served" in st["kind"]
        # promote v2 of both: the watcher loads them without a restart
        for model in MODELS:
            copy_version(root, model, "v2")
            artifacts.promote(root, model, "v2")
        for model in MODELS:
            wait_for(lambda: status_of(client, model).get("version") == "v2")
        # a corrupt v3 promoted behind the CLI's back is refused on POST /models/reload; v2 keeps serving
        for model in MODELS:
            path = copy_version(root, model, "v3")
            (path / artifacts.WEIGHTS).write_bytes(b"not a zip file")
            (root / model / artifacts.PROMOTED).write_text("v3\n")
        r = client.post("/models/reload")
        assert r.status_code == 200 and r.json()["reloaded"] is True and set(MODELS) <= set(r.json()["models"])
        for model in MODELS:
            st = status_of(client, model)
            assert st["version"] == "v2" and "v3" in (st.get("lastError") or ""), st
            assert st["refusals"] >= 1
        # the endpoints that use them keep answering
        assert client.get("/anomalies", params={"serviceName": "svc"}).status_code == 200
        r = client.get("/predict-health", params={"serviceName": "svc", "window": "30000"})
        assert r.status_code == 200 and set(r.json()["predictions"]) == set(ids)
