"""Shared fixtures: real servers on free loopback ports, stopped by PID."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def run_server(env: dict | None = None, args: list[str] | None = None, startup_timeout: float = 20.0):
    """Start ``maxine serve`` as a child process; yield its base URL and process."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MAXINE_")}
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "maxine", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", *(args or [])]
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stdout.read().decode(errors='replace')}")
            try:
                if httpx.get(url + "/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in time")
            time.sleep(0.05)
        server = type("Server", (), {"url": url, "port": port, "proc": proc})()
        yield server
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


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
