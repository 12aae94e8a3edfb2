"""Python clients for Maxine: :class:`MaxineClient` (sync) and :class:`AsyncMaxineClient`.

Both build requests and read answers through the same functions below; the
two classes only differ in how they do I/O and run the heartbeat loop.

``call`` does not wait for its report: ``report_later`` queues it, and one
sender (a thread, or an asyncio task) posts whatever is queued as one
``POST /record-response-times`` as soon as the previous one is answered, so
reports batch themselves under load and cost the caller no round trip.
``flush`` waits until they are sent; ``close`` flushes. A batch the registry
refuses or cannot be reached for is logged and counted in ``reports_dropped``.

    with MaxineClient("http://127.0.0.1:8080") as maxine:
        maxine.register("orders", "10.0.0.5", 8080, metadata={"version": "1.2.0"})
        reply = maxine.call("payments", lambda inst: httpx.get(f"http://{inst['address']}/pay"),
                            load_balancing="advanced-ml")
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

import httpx

from ..limits import MAX_REPORTS

log = logging.getLogger("maxine.client")


class MaxineError(Exception):
    def __init__(self, status: int, payload):
        message = payload.get("error") or payload.get("message") if isinstance(payload, dict) else payload
        super().__init__(f"{status}: {message}")
        self.status = status
        self.payload = payload


class ServiceUnavailable(MaxineError):
    """No eligible instance of the service (404 from /discover)."""


@dataclass
class Registration:
    service_name: str
    host: str
    port: int
    metadata: dict | None
    ttl: float | None
    node_id: str | None = None
    interval: float = 10.0
    load_report: object = None  # callable returning heartbeat load fields, or None
    stopped: bool = False
    body: dict = field(default_factory=dict)

    def __post_init__(self):
        self.body = {"serviceName": self.service_name, "host": self.host, "port": self.port}
        if self.metadata is not None:
            self.body["metadata"] = self.metadata
        if self.ttl is not None:
            self.body["ttl"] = self.ttl


# --- request building and answer reading, shared by both clients -------------
def _discover_params(service_name, load_balancing, version, tags, client_id, extra) -> dict:
    params = {"serviceName": service_name}
    if load_balancing:
        params["loadBalancing"] = load_balancing
    if version:
        params["version"] = version
    if tags:
        params["tags"] = ",".join(tags) if not isinstance(tags, str) else tags
    if client_id:
        params["clientId"] = client_id
    params.update({k: v for k, v in extra.items() if v is not None})
    return params


def _report_body(node_id, response_time_ms, success, status_code) -> dict:
    body = {"nodeId": node_id, "responseTime": max(0.0, float(response_time_ms)), "success": bool(success)}
    if status_code is not None:
        body["statusCode"] = status_code
    return body


def _read(response: httpx.Response, unavailable_on_404: bool = False):
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": response.text[:200]}
    if response.status_code >= 400:
        if unavailable_on_404 and response.status_code == 404:
            raise ServiceUnavailable(404, payload)
        raise MaxineError(response.status_code, payload)
    return payload


def _reports_body(batch: list[dict]) -> dict:
    return {"reports": batch}


def _dropped(client, batch: list[dict], exc: Exception) -> None:
    """A batch the registry refused or could not be reached for: counted and logged."""
    client.reports_dropped += len(batch)
    log.warning("%d reports not recorded: %s: %s", len(batch), type(exc).__name__, exc)


def _heartbeat_interval(ttl: float | None, heartbeat_interval: float | None) -> float:
    if heartbeat_interval is not None:
        return heartbeat_interval
    return max(0.2, (ttl or 30.0) / 3.0)


def _status_of(result) -> int | None:
    status = getattr(result, "status_code", None)
    return status if isinstance(status, int) else None


class MaxineClient:
    """Synchronous client (httpx). Heartbeats run on a daemon thread."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", timeout: float = 5.0, **httpx_options):
        self.http = httpx.Client(base_url=base_url, timeout=timeout, **httpx_options)
        self.registrations: list[Registration] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queued: list[dict] = []  # reports waiting for the sender thread
        self._sending = 0  # reports in the batch being posted
        self._reports = threading.Condition()
        self._sender: threading.Thread | None = None
        self.reports_dropped = 0

    # registration and heartbeats
    def register(self, service_name: str, host: str, port: int, metadata: dict | None = None,
                 ttl: float | None = None, heartbeat_interval: float | None = None,
                 load_report=None, heartbeat: bool = True) -> str:
        reg = Registration(service_name, host, port, metadata, ttl,
                           interval=_heartbeat_interval(ttl, heartbeat_interval), load_report=load_report)
        reg.node_id = _read(self.http.post("/register", json=reg.body))["nodeId"]
        if heartbeat:
            self.registrations.append(reg)
            self._ensure_heartbeats()
        return reg.node_id

    def heartbeat(self, node_id: str, **load) -> bool:
        """True if the lease was renewed, False if the registry no longer knows the node."""
        response = self.http.post("/heartbeat", json={"nodeId": node_id, **load})
        if response.status_code == 404:
            return False
        _read(response)
        return True

    def _beat(self, reg: Registration) -> None:
        load = reg.load_report() if reg.load_report else {}
        if not self.heartbeat(reg.node_id, **load) and not reg.stopped:
            log.info("registry forgot %s; registering again", reg.node_id)
            _read(self.http.post("/register", json=reg.body))

    def _ensure_heartbeats(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._heartbeat_loop, name="maxine-heartbeat", daemon=True)
            self._thread.start()

    def _heartbeat_loop(self) -> None:
        next_due: dict[int, float] = {}
        while not self._stop.is_set():
            now = time.monotonic()
            for reg in list(self.registrations):
                if reg.stopped or next_due.get(id(reg), 0.0) > now:
                    continue
                next_due[id(reg)] = now + reg.interval
                try:
                    self._beat(reg)
                except (httpx.HTTPError, MaxineError) as exc:
                    log.warning("heartbeat for %s failed: %s", reg.node_id, exc)
            self._stop.wait(0.05)

    def deregister(self, node_id: str) -> bool:
        for reg in self.registrations:
            if reg.node_id == node_id:
                reg.stopped = True
        return _read(self.http.request("DELETE", "/deregister", json={"nodeId": node_id}))["removed"]

    # discovery and telemetry
    def discover(self, service_name: str, load_balancing: str | None = None, version: str | None = None,
                 tags=None, client_id: str | None = None, **params) -> dict:
        query = _discover_params(service_name, load_balancing, version, tags, client_id, params)
        return _read(self.http.get("/discover", params=query), unavailable_on_404=True)

    def report(self, node_id: str, response_time_ms: float, success: bool = True,
               status_code: int | None = None) -> None:
        _read(self.http.post("/record-response-time",
                             json=_report_body(node_id, response_time_ms, success, status_code)))

    def report_later(self, node_id: str, response_time_ms: float, success: bool = True,
                     status_code: int | None = None) -> None:
        """Queue a report for the sender thread (see the module doc); returns at once."""
        with self._reports:
            self._queued.append(_report_body(node_id, response_time_ms, success, status_code))
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_reports, name="maxine-reports", daemon=True)
                self._sender.start()
            self._reports.notify_all()

    def _send_reports(self) -> None:
        while True:
            with self._reports:
                while not self._queued and not self._stop.is_set():
                    self._reports.wait()
                if not self._queued:
                    return
                batch = self._queued[:MAX_REPORTS]
                del self._queued[:MAX_REPORTS]
                self._sending = len(batch)
            try:
                _read(self.http.post("/record-response-times", json=_reports_body(batch)))
            except Exception as exc:  # the sender must outlive any failure
                _dropped(self, batch, exc)
            with self._reports:
                self._sending = 0
                self._reports.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued report is sent; False if ``timeout`` passed first."""
        with self._reports:
            return self._reports.wait_for(lambda: not self._queued and not self._sending, timeout)

    def record_call(self, caller_service: str, called_service: str) -> None:
        _read(self.http.post("/record-call", json={"callerService": caller_service, "calledService": called_service}))

    def call(self, service_name: str, fn, *, success=None, **discover_options):
        """Discover an instance, call ``fn(instance)``, and report latency and outcome.

        The call counts as failed if ``fn`` raises, or if ``success(result)`` is
        false (default: an HTTP status of 500 or more on the result)."""
        instance = self.discover(service_name, **discover_options)
        start = time.perf_counter()
        try:
            result = fn(instance)
        except BaseException:
            self.report_later(instance["nodeId"], (time.perf_counter() - start) * 1000.0, success=False)
            raise
        elapsed = (time.perf_counter() - start) * 1000.0
        status = _status_of(result)
        ok = success(result) if success else not (status is not None and status >= 500)
        self.report_later(instance["nodeId"], elapsed, success=ok, status_code=status)
        return result

    def close(self) -> None:
        """Send the queued reports, stop heartbeats and deregister what this client registered."""
        self.flush(timeout=10)
        self._stop.set()
        with self._reports:
            self._reports.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for reg in self.registrations:
            if not reg.stopped:
                reg.stopped = True
                try:
                    self.http.request("DELETE", "/deregister", json={"nodeId": reg.node_id})
                except httpx.HTTPError as exc:
                    log.warning("deregister %s failed: %s", reg.node_id, exc)
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncMaxineClient:
    """Asynchronous client (httpx.AsyncClient). Heartbeats run as an asyncio task."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", timeout: float = 5.0, **httpx_options):
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout, **httpx_options)
        self.registrations: list[Registration] = []
        self._tasks: list[asyncio.Task] = []
        self._queued: list[dict] = []  # reports waiting for the sender task
        self._sender: asyncio.Task | None = None  # runs while reports are queued
        self.reports_dropped = 0

    async def register(self, service_name: str, host: str, port: int, metadata: dict | None = None,
                       ttl: float | None = None, heartbeat_interval: float | None = None,
                       load_report=None, heartbeat: bool = True) -> str:
        reg = Registration(service_name, host, port, metadata, ttl,
                           interval=_heartbeat_interval(ttl, heartbeat_interval), load_report=load_report)
        reg.node_id = _read(await self.http.post("/register", json=reg.body))["nodeId"]
        if heartbeat:
            self.registrations.append(reg)
            self._tasks.append(asyncio.create_task(self._heartbeat_loop(reg)))
        return reg.node_id

    async def heartbeat(self, node_id: str, **load) -> bool:
        response = await self.http.post("/heartbeat", json={"nodeId": node_id, **load})
        if response.status_code == 404:
            return False
        _read(response)
        return True

    async def _heartbeat_loop(self, reg: Registration) -> None:
        while not reg.stopped:
            await asyncio.sleep(reg.interval)
            if reg.stopped:
                return
            try:
                load = reg.load_report() if reg.load_report else {}
                if not await self.heartbeat(reg.node_id, **load) and not reg.stopped:
                    log.info("registry forgot %s; registering again", reg.node_id)
                    _read(await self.http.post("/register", json=reg.body))
            except (httpx.HTTPError, MaxineError) as exc:
                log.warning("heartbeat for %s failed: %s", reg.node_id, exc)

    async def deregister(self, node_id: str) -> bool:
        for reg in self.registrations:
            if reg.node_id == node_id:
                reg.stopped = True
        return _read(await self.http.request("DELETE", "/deregister", json={"nodeId": node_id}))["removed"]

    async def discover(self, service_name: str, load_balancing: str | None = None, version: str | None = None,
                       tags=None, client_id: str | None = None, **params) -> dict:
        query = _discover_params(service_name, load_balancing, version, tags, client_id, params)
        return _read(await self.http.get("/discover", params=query), unavailable_on_404=True)

    async def report(self, node_id: str, response_time_ms: float, success: bool = True,
                     status_code: int | None = None) -> None:
        _read(await self.http.post("/record-response-time",
                                   json=_report_body(node_id, response_time_ms, success, status_code)))

    def report_later(self, node_id: str, response_time_ms: float, success: bool = True,
                     status_code: int | None = None) -> None:
        """Queue a report for the sender task (see the module doc); returns at once."""
        self._queued.append(_report_body(node_id, response_time_ms, success, status_code))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_reports())

    async def _send_reports(self) -> None:
        while self._queued:
            batch = self._queued[:MAX_REPORTS]
            del self._queued[:MAX_REPORTS]
            try:
                _read(await self.http.post("/record-response-times", json=_reports_body(batch)))
            except Exception as exc:  # the sender must outlive any failure
                _dropped(self, batch, exc)

    async def flush(self) -> None:
        """Wait until every queued report is sent."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def record_call(self, caller_service: str, called_service: str) -> None:
        _read(await self.http.post("/record-call",
                                   json={"callerService": caller_service, "calledService": called_service}))

    async def call(self, service_name: str, fn, *, success=None, **discover_options):
        """Async form of :meth:`MaxineClient.call`; ``fn(instance)`` is awaited."""
        instance = await self.discover(service_name, **discover_options)
        start = time.perf_counter()
        try:
            result = await fn(instance)
        except BaseException:
            self.report_later(instance["nodeId"], (time.perf_counter() - start) * 1000.0, success=False)
            raise
        elapsed = (time.perf_counter() - start) * 1000.0
        status = _status_of(result)
        ok = success(result) if success else not (status is not None and status >= 500)
        self.report_later(instance["nodeId"], elapsed, success=ok, status_code=status)
        return result

    async def aclose(self) -> None:
        """Send the queued reports, stop heartbeats and deregister what this client registered."""
        await self.flush()
        for reg in self.registrations:
            reg.stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for reg in self.registrations:
            try:
                await self.http.request("DELETE", "/deregister", json={"nodeId": reg.node_id})
            except httpx.HTTPError as exc:
                log.warning("deregister %s failed: %s", reg.node_id, exc)
        await self.http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


__all__ = ["MaxineClient", "AsyncMaxineClient", "MaxineError", "ServiceUnavailable"]
