"""The dashboard in a real browser: Debian's headless chromium, driven over the
Chrome DevTools Protocol, loads /dashboard from a real server with a few
services and some telemetry; the test reads the rendered DOM (instances,
charts drawn by the page's JavaScript) and saves screenshots under
``test-artifacts/``."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from conftest import run_server, stop_process

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1440,1100"]

if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("chromium is required in CI (apt-get install -y chromium)")
    pytest.skip("chromium not installed (apt-get install -y chromium)", allow_module_level=True)


class Browser:
    """Just enough CDP: navigate, evaluate, screenshot."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="maxine-chromium-")
        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                      "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                                      "about:blank"], stdout=self.log, stderr=subprocess.STDOUT)
        port_file = Path(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start: " + Path(self.log.name).read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        pages = []
        while not pages:
            pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
            time.sleep(0.05)
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10))
        self.ids = itertools.count(1)
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1440, height=1100, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def open(self, url: str, ready: str, timeout: float = 20.0):
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not self.evaluate(ready):
            if time.monotonic() > deadline:
                raise AssertionError(f"page not ready: {ready}\n" + (self.evaluate("document.body.innerText") or ""))
            time.sleep(0.1)

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        params = {"format": "png"}
        if full_page:
            height = self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
            params["clip"] = {"x": 0, "y": 0, "width": 1440, "height": max(height, 400), "scale": 1}
            params["captureBeyondViewport"] = True
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))

    def close(self):
        try:
            self.stack.close()
        finally:
            stop_process(self.proc)
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)


def drive_traffic(url: str, seconds: float) -> dict[str, list[str]]:
    """Three services; in 'orders' one slow and one failing instance; several strategies."""
    services = {"orders": 4, "payments": 3, "inventory": 2}
    ids: dict[str, list[str]] = {}
    with httpx.Client(base_url=url, timeout=10.0) as http:
        for name, count in services.items():
            ids[name] = [http.post("/register", json={
                "serviceName": name, "host": f"10.0.{len(ids)}.{i + 1}", "port": 8080,
                "metadata": {"version": f"1.{i % 2}.0", "zone": "eu-1a"}}).json()["nodeId"] for i in range(count)]
        for caller, called in (("web", "orders"), ("orders", "payments"), ("orders", "inventory"),
                               ("payments", "ledger"), ("web", "inventory")):
            for _ in range(3):
                http.post("/record-call", json={"callerService": caller, "calledService": called})
        strategies = ["round-robin", "least-response-time", "p2c-peak-ewma"]
        end = time.monotonic() + seconds
        tick = 0
        while time.monotonic() < end:
            tick += 1
            for name, nodes in ids.items():
                for node_id in nodes:
                    http.post("/heartbeat", json={"nodeId": node_id, "inFlight": tick % 3, "cpu": 0.3})
                for k in range(12):
                    strategy = strategies[k % len(strategies)]
                    pick = http.get("/discover", params={"serviceName": name, "loadBalancing": strategy}).json()
                    node_id = pick["nodeId"]
                    slow = node_id == ids["orders"][1]
                    failing = node_id == ids["orders"][2]
                    http.post("/record-response-time", json={
                        "nodeId": node_id, "responseTime": 180.0 if slow else 12.0 + (k % 5),
                        "success": not (failing and k % 2)})
            time.sleep(0.25)
    return ids


@pytest.fixture(scope="module")
def loaded_server():
    with run_server() as server:
        ids = drive_traffic(server.url, seconds=7.0)  # > 3 samples at the 2 s sampling interval
        yield server, ids


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    try:
        yield b
    finally:
        b.close()


READY = ("!!document.body && document.body.dataset.loaded === 'true' && "
         "document.querySelectorAll('svg.chart[data-chart=health] path.series').length >= 4")


def test_dashboard_renders_instances_and_charts(loaded_server, browser):
    server, ids = loaded_server
    browser.open(server.url + "/dashboard", READY)
    dom = browser.evaluate("""(() => {
        const q = (s) => [...document.querySelectorAll(s)];
        return {
          services: q('section.service').map((s) => s.dataset.service),
          instances: q('tr.instance').map((r) => r.dataset.nodeId),
          scores: q('tr.instance .score').map((e) => Number(e.textContent)),
          healthCharts: q('svg.chart[data-chart=health]').length,
          healthLines: q('svg.chart[data-chart=health] path.series').length,
          healthPathLengths: q('svg.chart[data-chart=health] path.series').map((p) => p.getAttribute('d').split('L').length),
          shareCharts: q('svg.chart[data-chart=share]').length,
          shareAreas: q('svg.chart[data-chart=share] path.series').length,
          captions: q('figcaption').map((f) => f.textContent),
          models: document.getElementById('models').textContent,
          modelRows: q('#models table.models tbody tr').length,
          predictedLines: q('svg.chart[data-chart=health] path.series[stroke-dasharray]').length,
          bands: q('svg.chart[data-chart=health] path.band').length,
          anomalies: document.getElementById('anomalies').textContent,
          totals: document.getElementById('totals').textContent,
          strategyBars: q('svg.chart[data-chart=strategies] rect.series').map((r) => r.dataset.series),
          status: document.getElementById('status').textContent,
        };
    })()""")
    assert dom["services"] == ["inventory", "orders", "payments"]
    assert sorted(dom["instances"]) == sorted(i for nodes in ids.values() for i in nodes)
    assert len(dom["scores"]) == 9 and all(0 <= s <= 100 for s in dom["scores"])
    assert min(dom["scores"]) < 80 <= max(dom["scores"])  # the slow / failing orders instances show up
    assert dom["healthCharts"] == 3
    assert dom["healthLines"] >= 9 and max(dom["healthPathLengths"]) >= 3  # lines over several samples
    assert dom["shareCharts"] >= 3 * 3 and dom["shareAreas"] >= 9
    assert any("round-robin" in c for c in dom["captions"])
    data = httpx.get(server.url + "/dashboard/data").json()
    if data["models"]:  # the learned-routing models are installed: their panel, predictions and band
        assert dom["modelRows"] == len(data["models"])
        assert dom["predictedLines"] >= 1 and dom["bands"] >= 1
        assert any("forecast band" in c for c in dom["captions"])
    else:
        assert any("predicted: no model yet" in c for c in dom["captions"])
        assert "no model yet" in dom["models"]
    assert dom["anomalies"]  # a list, "none" or "no anomaly detector yet": never empty, never an error
    assert "discoveries" in dom["totals"]
    assert set(dom["strategyBars"]) == {"round-robin", "least-response-time", "p2c-peak-ewma"}
    assert dom["status"].startswith("live")
    browser.screenshot(ARTIFACTS / "dashboard.png")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_dashboard_updates_live(loaded_server, browser):
    server, ids = loaded_server
    browser.open(server.url + "/dashboard", READY)
    with httpx.Client(base_url=server.url) as http:
        http.post("/register", json={"serviceName": "late-arrival", "host": "10.9.9.9", "port": 1})
    deadline = time.monotonic() + 10
    while not browser.evaluate("!!document.querySelector('tr.instance[data-node-id=\"late-arrival:10.9.9.9:1\"]')"):
        assert time.monotonic() < deadline, "the new instance never appeared without a reload"
        time.sleep(0.2)


def test_dependency_graph_page(loaded_server, browser):
    server, _ = loaded_server
    browser.open(server.url + "/dependency-graph",
                 "!!document.body && document.body.dataset.loaded === 'true' && !!document.querySelector('svg[data-chart=dependency-graph]')")
    dom = browser.evaluate("""(() => ({
        nodes: [...document.querySelectorAll('g.node')].map((g) => g.dataset.service).sort(),
        edges: [...document.querySelectorAll('path.edge')].map((p) => p.dataset.edge).sort(),
    }))()""")
    assert dom["nodes"] == ["inventory", "ledger", "orders", "payments", "web"]
    assert dom["edges"] == sorted(["web->orders", "orders->payments", "orders->inventory",
                                   "payments->ledger", "web->inventory"])
    browser.screenshot(ARTIFACTS / "dependency-graph.png", full_page=False)
