"""Request validation shared by the fast path and the FastAPI routes.

Each validator takes the decoded JSON body (or query parameters) and returns
either the cleaned values or a list of problems, one per bad field, each a
sentence a person can act on.
"""

from __future__ import annotations

import math
import re

from ..limits import MAX_REPORTS

SERVICE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
MAX_NODE_ID = 512
MAX_NUMBER = 1e12


class Invalid(Exception):
    def __init__(self, details: list[str]):
        super().__init__("; ".join(details))
        self.details = details


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _printable(text: str) -> bool:
    return text.isprintable() and text == text.strip()


def _number(body: dict, key: str, problems: list, lo: float = 0.0, hi: float = MAX_NUMBER,
            required: bool = False, lo_open: bool = False, label: str | None = None,
            nullable: bool = True):
    """A finite number within bounds; None (and a problem) otherwise.
    An explicit null counts as absent only where ``nullable``."""
    value = body.get(key)
    label = label or key
    if value is None:
        if required or (key in body and not nullable):
            problems.append(f"{label}: required" if required else f"{label}: must be a number")
        return None
    if not _is_number(value) or value < lo or value > hi or (lo_open and value == lo):
        bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
        problems.append(f"{label}: must be a number {bound} and <= {hi:g}")
        return None
    return value


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise Invalid(["body: must be a JSON object"])
    return body


def service_name(value) -> str | None:
    if isinstance(value, str) and SERVICE_NAME.fullmatch(value):
        return value
    return None


def _require_service_name(body: dict, key: str, problems: list) -> str | None:
    name = service_name(body.get(key))
    if name is None:
        problems.append(f"{key}: required, 1-100 characters of letters, digits, '.', '_' or '-'")
    return name


def node_id(body: dict, problems: list) -> str | None:
    value = body.get("nodeId")
    if not isinstance(value, str) or not (0 < len(value) <= MAX_NODE_ID) or not _printable(value):
        problems.append(f"nodeId: required, a string of 1-{MAX_NODE_ID} printable characters")
        return None
    return value


def _short_string(meta: dict, key: str, problems: list, limit: int = 100) -> None:
    value = meta.get(key)
    if value is not None and (not isinstance(value, str) or not (0 < len(value) <= limit) or not _printable(value)):
        problems.append(f"metadata.{key}: must be a string of 1-{limit} printable characters")


def metadata(meta, problems: list) -> dict:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        problems.append("metadata: must be a JSON object")
        return {}
    _short_string(meta, "version", problems)
    _number(meta, "weight", problems, lo=0.0, hi=1e6, lo_open=True, label="metadata.weight", nullable=False)
    tags = meta.get("tags")
    if tags is not None:
        if (not isinstance(tags, list) or len(tags) > 10
                or not all(isinstance(t, str) and 0 < len(t) <= 50 and _printable(t) for t in tags)):
            problems.append("metadata.tags: must be a list of at most 10 strings of 1-50 printable characters")
    check = meta.get("healthCheck")
    if check is not None:
        if not isinstance(check, dict):
            problems.append("metadata.healthCheck: must be an object {url, interval, timeout}")
        else:
            url = check.get("url")
            if url is not None and (not isinstance(url, str) or not (0 < len(url) <= 2048)):
                problems.append("metadata.healthCheck.url: must be a string of 1-2048 characters")
            for key in ("interval", "timeout"):
                value = check.get(key)
                if value is not None and (not _is_number(value) or not 0 < value <= 86_400_000):
                    problems.append(f"metadata.healthCheck.{key}: must be a number of milliseconds > 0")
    _short_string(meta, "region", problems)
    _short_string(meta, "zone", problems)
    for key, lo, hi in (("lat", -90.0, 90.0), ("lon", -180.0, 180.0), ("cost", 0.0, MAX_NUMBER)):
        _number(meta, key, problems, lo=lo, hi=hi, label=f"metadata.{key}", nullable=False)
    return meta


def register(body) -> dict:
    body = _object(body)
    problems: list[str] = []
    name = _require_service_name(body, "serviceName", problems)
    host = body.get("host")
    if not isinstance(host, str) or not (0 < len(host) <= 253) or not _printable(host) or " " in host or "/" in host:
        problems.append("host: required, 1-253 printable characters without spaces or '/'")
    port = body.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        problems.append("port: required, an integer from 1 to 65535")
    meta = metadata(body.get("metadata"), problems)
    ttl = _number(body, "ttl", problems, lo=1.0, hi=86_400.0)
    if problems:
        raise Invalid(problems)
    return {"service_name": name, "host": host, "port": port, "metadata": meta, "ttl": ttl}


LOAD_FIELDS = (("inFlight", "in_flight", 0.0, 1e9), ("cpu", "cpu", 0.0, 1.0), ("qps", "qps", 0.0, 1e9),
               ("errorRate", "error_rate", 0.0, 1.0), ("latencyMs", "latency_ms", 0.0, 1e9))


def heartbeat(body) -> tuple[str, dict]:
    body = _object(body)
    problems: list[str] = []
    nid = node_id(body, problems)
    load = {}
    for key, name, lo, hi in LOAD_FIELDS:
        value = body.get(key)
        if value is None:  # absent or null: not reported
            continue
        kind = type(value)
        # the common case inline (NaN and infinities fail the bounds); anything else gets _number's verdict
        if (kind is float or kind is int) and lo <= value <= hi:
            load[name] = value
        elif (value := _number(body, key, problems, lo=lo, hi=hi)) is not None:
            load[name] = value
    if problems:
        raise Invalid(problems)
    return nid, load


def deregister(body) -> str:
    problems: list[str] = []
    nid = node_id(_object(body), problems)
    if problems:
        raise Invalid(problems)
    return nid


def response_time(body) -> tuple[str, float, bool]:
    body = _object(body)
    problems: list[str] = []
    nid = node_id(body, problems)
    latency = body.get("responseTime")
    kind = type(latency)
    if not ((kind is float or kind is int) and 0.0 <= latency <= 86_400_000.0):  # else _number's verdict
        latency = _number(body, "responseTime", problems, hi=86_400_000.0, required=True)
    status = body.get("statusCode")
    if status is not None and (not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599):
        problems.append("statusCode: must be an integer HTTP status from 100 to 599")
        status = None
    success = body.get("success")
    if success is None:
        success = not (status is not None and status >= 500)
    elif not isinstance(success, bool):
        problems.append("success: must be true or false")
    if problems:
        raise Invalid(problems)
    return nid, float(latency), success


def response_times(body) -> list[tuple[str, float, bool]]:
    """``{"reports": [report, ...]}``: each report as :func:`response_time` reads one;
    a problem names the report (``reports[3].responseTime: ...``)."""
    reports = _object(body).get("reports")
    if not isinstance(reports, list) or not 1 <= len(reports) <= MAX_REPORTS:
        raise Invalid([f"reports: required, a list of 1 to {MAX_REPORTS} reports"])
    cleaned, problems = [], []
    for i, report in enumerate(reports):
        try:
            cleaned.append(response_time(report))
        except Invalid as exc:
            problems.extend(f"reports[{i}].{detail}" for detail in exc.details)
            if len(problems) >= 20:
                break
    if problems:
        raise Invalid(problems[:20])
    return cleaned


def call_edge(body) -> tuple[str, str]:
    body = _object(body)
    problems: list[str] = []
    caller = _require_service_name(body, "callerService", problems)
    called = _require_service_name(body, "calledService", problems)
    if problems:
        raise Invalid(problems)
    return caller, called


def query_float(params: dict, key: str, lo: float, hi: float, problems: list) -> float | None:
    raw = params.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not lo <= value <= hi:
        problems.append(f"{key}: must be a number from {lo:g} to {hi:g}")
        return None
    return value
