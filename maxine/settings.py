"""Settings: one table drives the CLI flags, the ``MAXINE_*`` environment
variables and the README's settings table. Flags win over the environment,
the environment over defaults."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _names(text: str) -> str:
    """A comma-separated list of load-balancing strategies, each one that exists."""
    from .balancers import factories  # here: settings must not import the strategies to be read

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in factories()]
    if unknown:
        raise ValueError(f"unknown strategies {', '.join(unknown)}; choose from {', '.join(sorted(factories()))}")
    return ",".join(dict.fromkeys(names))


def _setting(default, help: str, parse=None, choices=None):
    return field(default=default, metadata={"help": help, "parse": parse, "choices": choices})


@dataclass
class Settings:
    host: str = _setting("127.0.0.1", "Address to bind; 0.0.0.0 (all interfaces) must be asked for explicitly.")
    port: int = _setting(8080, "TCP port to listen on.")
    server: str = _setting("granian", "HTTP server, in this process (granian served discovery 2.3x faster than uvicorn here; docs/performance.md).",
                           choices=("granian", "uvicorn"))
    interface: str = _setting("rsgi", "How granian calls the app: rsgi (its native interface, measured faster here; docs/performance.md) or asgi.",
                              choices=("rsgi", "asgi"))
    log_level: str = _setting("info", "Log level.", choices=("critical", "error", "warning", "info", "debug"))
    access_log: bool = _setting(False, "Log every request (costs about 10 % of throughput).", parse=_bool)
    strategies: str = _setting("", "Comma-separated load-balancing strategies this server offers; the first is the default for a /discover without loadBalancing (empty: every built-in, round-robin the default). A strategy not offered costs nothing per client report.", parse=_names)
    heartbeat_timeout: float = _setting(30.0, "Default lease TTL in seconds; an instance may override it with `ttl` at register.")
    sweep_interval: float = _setting(0.2, "Seconds between lease sweeps (expired instances are never served even before the sweep).")
    dispatch_ttl: float = _setting(30.0, "Seconds after which a dispatch never reported back stops counting as in flight.")
    max_body_bytes: int = _setting(1 << 20, "Largest accepted request body; larger bodies get 413.")
    fast_path: bool = _setting(True, "Serve /discover and the JSON-body writes from the raw layer in front of FastAPI.", parse=_bool)
    data_dir: str = _setting("./data", "Directory for persistent state and logs.")
    persistence: str = _setting("memory", "Where registry state lives.", choices=("memory", "file", "redis"))
    fsync: str = _setting("always", "File persistence: fsync the journal on every change (always), every --fsync-interval (interval) or never (the OS decides; still survives a process crash).", choices=("always", "interval", "never"))
    fsync_interval: float = _setting(1.0, "Seconds between journal fsyncs with --fsync interval; also how often lease renewals are flushed.")
    snapshot_interval: float = _setting(300.0, "Seconds between file snapshots (the journal is truncated after each).")
    restart_grace: float = _setting(5.0, "After a restart, seconds during which leases that run out are held so live instances can heartbeat again (leases that ran out while the server was down still expire at once).")
    self_preservation_threshold: float = _setting(0.15, "Stop evicting when more than this fraction of instances would expire within --self-preservation-window (0 disables).")
    self_preservation_window: float = _setting(15.0, "Window in seconds for the self-preservation threshold.")
    event_history: int = _setting(10000, "Change events kept for /events and stream resumption.")
    redis_url: str = _setting("redis://127.0.0.1:6379/0", "Redis for --persistence redis (shared by all replicas).")
    redis_prefix: str = _setting("maxine", "Key prefix in Redis; replicas sharing a registry use the same prefix.")
    mqtt_url: str = _setting("", "Publish change events to this MQTT broker (mqtt://host:port); empty disables.")
    mqtt_topic: str = _setting("maxine/registry/events", "MQTT base topic; events go to <topic>/<event>.")
    ml: bool = _setting(True, "Run the ML hub's background rounds (learners, forecasts, anomalies, scaling); the ML strategies work either way.", parse=_bool)
    ml_sample_s: float = _setting(1.0, "Seconds between ML hub rounds.")
    ml_forecast_s: float = _setting(5.0, "Seconds between statsmodels refits of one series.")
    ml_max_fits: int = _setting(2, "statsmodels fits per ML round at most (one costs ~10-30 ms of the worker thread).")
    ml_max_nodes: int = _setting(2000, "Instances the ML hub visits per round at most (services with new reports first, then round-robin).")
    ml_max_learn: int = _setting(128, "Nodes fed to the river learners per round at most.")
    ml_max_tracked: int = _setting(4096, "Nodes with per-node model state (drift detector, series) at most; least recently reported are forgotten.")
    models_dir: str = _setting("", "Root of the model artifacts (default: the checkout's models/ directory).")
    models_watch_s: float = _setting(2.0, "Seconds between checks for a newly promoted model (0: only POST /models/reload).")
    telemetry_log: bool = _setting(False, "Record discoveries, client reports, load reports and call edges to a rotating log under <data-dir>/telemetry for `maxine train advanced-ml --data DIR`.", parse=_bool)
    telemetry_log_max_mb: float = _setting(256.0, "Largest on-disk size of the telemetry log in MB (oldest segments are deleted).")
    telemetry_log_flush_s: float = _setting(10.0, "Seconds between telemetry log writes (one segment each, written by a worker thread).")

    @classmethod
    def env_name(cls, name: str) -> str:
        return "MAXINE_" + ("HEARTBEAT_TIMEOUT" if name == "heartbeat_timeout" else name.upper())

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(cls.env_name(f.name))
            if raw is not None:
                values[f.name] = _convert(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            parser.add_argument(flag, dest=f.name, default=None, type=_argument_type(f), choices=f.metadata["choices"],
                                help=f"{f.metadata['help']} [env {cls.env_name(f.name)}, default {f.default}]".replace("%", "%%"))

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ=None) -> "Settings":
        return cls.from_env(environ, **{f.name: getattr(args, f.name, None) for f in fields(cls)})

    @classmethod
    def table(cls) -> list[tuple[str, str, str, str]]:
        """(flag, environment variable, default, meaning) rows for the docs."""
        return [("--" + f.name.replace("_", "-"), cls.env_name(f.name), str(f.default), f.metadata["help"])
                for f in fields(cls)]


def _argument_type(f):
    """The setting's parser for argparse, which shows an ArgumentTypeError's message."""
    parse = f.metadata["parse"]
    if parse is None:
        return type(f.default)

    def convert(raw: str):
        try:
            return parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


def _convert(f, raw: str):
    parse = f.metadata["parse"] or type(f.default)
    try:
        value = parse(raw)
    except ValueError as exc:
        raise SystemExit(f"invalid {Settings.env_name(f.name)}={raw!r}: {exc}") from None
    choices = f.metadata["choices"]
    if choices and value not in choices:
        raise SystemExit(f"invalid {Settings.env_name(f.name)}={raw!r}: choose from {', '.join(choices)}")
    return value
