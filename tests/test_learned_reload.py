"""Train → promote → hot reload against a real running server, and a corrupt
artifact refused while the previous model keeps serving; /discover never 5xx."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np

from maxine.models import artifacts
from maxine.models.features import RELATIVE_FEATURES as FEATURES  # what advanced-ml reads
from tests.conftest import run_server


def weights(seed):
    rng = np.random.default_rng(seed)
    f = len(FEATURES)
    return {"mean": np.zeros(f), "scale": np.ones(f), "W0": rng.normal(0, 0.05, (f, 8)), "b0": np.zeros(8),
            "W1": rng.normal(0, 0.05, (8, 1)), "b1": np.array([3.0])}


def advanced_ml_status(client):
    models = client.get("/models").json()["models"]
    return next(m for m in models if m.get("name") == "advanced-ml")


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_promote_hot_reloads_and_corrupt_is_refused(tmp_path):
    root = tmp_path / "models"
    artifacts.write_artifact(root, "advanced-ml", "v1", weights(1), {"features": list(FEATURES)})
    artifacts.promote(root, "advanced-ml", "v1")
    env = {"MAXINE_MODELS_DIR": str(root), "MAXINE_MODELS_WATCH_S": "0.2"}
    with run_server(env=env) as srv, httpx.Client(base_url=srv.url, timeout=10.0) as client:
        for i in range(4):
            r = client.post("/register", json={"serviceName": "svc", "host": "127.0.0.1", "port": 7000 + i})
            assert r.status_code in (200, 201), r.text
        statuses, stop = [], threading.Event()

        def hammer():
            with httpx.Client(base_url=srv.url, timeout=10.0) as c:
                while not stop.is_set():
                    statuses.append(c.get("/discover", params={"serviceName": "svc",
                                                               "loadBalancing": "advanced-ml"},
                                          follow_redirects=False).status_code)

        t = threading.Thread(target=hammer)
        t.start()
        try:
            wait_for(lambda: len(statuses) > 5)
            st = wait_for(lambda: (s := advanced_ml_status(client)).get("version") == "v1" and s)
            assert st["fallbackActive"] is False
            # promote a new version: the watcher picks it up without a restart
            artifacts.write_artifact(root, "advanced-ml", "v2", weights(2), {"features": list(FEATURES)})
            artifacts.promote(root, "advanced-ml", "v2")
            wait_for(lambda: advanced_ml_status(client).get("version") == "v2")
            # a corrupt v3 promoted behind the CLI's back is refused; v2 keeps serving
            path = artifacts.write_artifact(root, "advanced-ml", "v3", weights(3), {"features": list(FEATURES)})
            (path / "weights.npz").write_bytes(b"not a zip file")
            (root / "advanced-ml" / "PROMOTED").write_text("v3\n")
            r = client.post("/models/reload")
            assert r.status_code == 200
            st = advanced_ml_status(client)
            assert st["version"] == "v2" and "v3" in (st.get("lastError") or ""), st
            assert st["refusals"] >= 1
            n = len(statuses)
            wait_for(lambda: len(statuses) > n + 5)
        finally:
            stop.set()
            t.join()
        assert statuses and set(statuses) <= {200, 302, 307}, sorted(set(statuses))
