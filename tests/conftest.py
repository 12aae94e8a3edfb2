"""Shared fixtures: real servers on free loopback ports, stopped by PID."""

from __future__ import annotations

import os
import re

import httpx
import pytest

from maxine.bench.process import free_port, maxine_server, stop_process  # noqa: F401  (shared with tests)


class ManualClock:
    """A clock the test moves by hand: ``clock.t += 5``."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def scored_registry():
    """A Maxine on a manual clock with four instances of service ``s`` that advanced-ml
    has scored, half a second later: (maxine, node ids)."""
    from maxine.api.operations import Maxine

    clock = ManualClock(1000.0)
    maxine = Maxine(clock=clock)
    ids = [maxine.register({"serviceName": "s", "host": "127.0.0.1", "port": 7200 + i})[1]["nodeId"]
           for i in range(4)]
    for _ in range(8):  # advanced-ml scores every node once it has picked from the pool
        maxine.discover(b"serviceName=s&loadBalancing=advanced-ml")
    clock.t += 0.5
    return maxine, ids


def run_server(env: dict | None = None, args: list[str] | None = None, startup_timeout: float = 30.0):
    """``maxine serve`` as a child process on a free loopback port (a context
    manager yielding an object with ``url``, ``port``, ``proc``), stopped by PID."""
    return maxine_server(args, env=env, startup_timeout=startup_timeout)


@pytest.fixture(scope="module")
def server():
    """One real server per test module (fresh registry per module)."""
    with run_server() as srv:
        yield srv


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        yield client


_names = iter(range(10**9))


@pytest.fixture
def svc_name(request):
    """A service name unique within the session, so tests sharing a server don't collide."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"t{next(_names)}-{request.node.name[:60]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (``CI`` set) a skipped test is a failure: the services and the
    browser the tests need are installed and started by ``./run test``."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI", "").lower() not in ("", "0", "false"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {reason}"
