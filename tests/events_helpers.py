"""Helpers for the event, persistence and Redis tests (SSE parsing, throwaway redis-server)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import httpx

from conftest import free_port


class SSE:
    """A minimal Server-Sent Events reader over a raw httpx stream."""

    def __init__(self, url: str, headers: dict | None = None, timeout: float = 10.0):
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, read=timeout))
        self.cm = self.client.stream("GET", url, headers=headers or {})
        self.response = self.cm.__enter__()
        self.lines = self.response.iter_lines()

    def next(self) -> dict:
        """The next event frame as {id, event, data} (comments and retry skipped)."""
        frame: dict = {}
        for line in self.lines:
            if line == "":
                if "data" in frame or "event" in frame:
                    return frame
                frame = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key in ("id", "event", "data"):
                frame[key] = value
        raise EOFError("stream ended")

    def close(self) -> None:
        try:
            self.cm.__exit__(None, None, None)
        finally:
            self.client.close()


class ThrowawayRedis:
    """A private redis-server on a free loopback port, stopped by PID."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "ThrowawayRedis":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not installed")
        self.proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("throwaway redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
