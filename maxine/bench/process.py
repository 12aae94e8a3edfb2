"""Start and stop server processes on loopback, for benchmarks and tests.

Every process started here is stopped by its PID, even when the caller fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc = proc
        self.port = port
        self.pid = proc.pid
        self.url = f"http://127.0.0.1:{port}"

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads) so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
        stop_process(self.proc, sig, timeout)


def stop_process(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


@contextmanager
def server_process(module_args: list[str], env: dict | None = None, port: int | None = None,
                   ready_path: str = "/health", startup_timeout: float = 30.0, output=subprocess.PIPE):
    """Run ``python -m <module_args> --host 127.0.0.1 --port N`` and wait until
    ``ready_path`` answers 200. ``MAXINE_*`` variables of this process are not
    inherited unless given in ``env``."""
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MAXINE_")}
    full_env.update(env or {})
    cmd = [sys.executable, "-m", *module_args, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=full_env, stdout=output, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, port)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"server exited with {proc.returncode}: {out[-2000:]}")
            try:
                if httpx.get(server.url + ready_path, timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer {ready_path} within {startup_timeout} s")
            time.sleep(0.05)
        yield server
    finally:
        stop_process(proc)


def maxine_server(args: list[str] | None = None, env: dict | None = None, **kwargs):
    """``maxine serve`` in a child process (a context manager yielding :class:`ServerProcess`)."""
    return server_process(["maxine", "serve", "--log-level", "warning", *(args or [])], env=env, **kwargs)
