"""Settings: defaults, MAXINE_* environment variables, flags win."""

from __future__ import annotations

import argparse

import httpx
import pytest

from conftest import run_server
from maxine.settings import Settings


def parse(argv, environ):
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    return Settings.from_args(parser.parse_args(argv), environ)


def test_defaults_bind_loopback():
    s = parse([], {})
    assert s.host == "127.0.0.1" and s.port == 8080 and s.persistence == "memory"
    assert s.heartbeat_timeout == 30.0


def test_environment_then_flags():
    env = {"MAXINE_PORT": "9001", "MAXINE_HEARTBEAT_TIMEOUT": "5", "MAXINE_FAST_PATH": "off"}
    s = parse([], env)
    assert (s.port, s.heartbeat_timeout, s.fast_path) == (9001, 5.0, False)
    s = parse(["--port", "9002", "--fast-path", "true"], env)
    assert (s.port, s.fast_path) == (9002, True)


def test_bad_environment_value_is_a_clear_error():
    with pytest.raises(SystemExit, match="MAXINE_PORT"):
        parse([], {"MAXINE_PORT": "eighty"})
    with pytest.raises(SystemExit, match="choose from"):
        parse([], {"MAXINE_PERSISTENCE": "floppy"})


def test_default_ttl_from_environment_reaches_the_server():
    with run_server(env={"MAXINE_HEARTBEAT_TIMEOUT": "7"}) as srv, httpx.Client(base_url=srv.url) as http:
        assert http.post("/register", json={"serviceName": "s", "host": "h", "port": 1}).json()["ttl"] == 7.0
