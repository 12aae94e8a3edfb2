"""Load-balancing scenarios: a JSON format anyone can write without touching code.

See ``docs/lb-lab.md`` for the format. :func:`load` reads a file (or a dict)
and fills in defaults; :func:`builtin` lists the shipped scenarios.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

SCENARIO_DIR = Path(__file__).parent / "scenarios"

# Seeds 0..127 are for tuning strategies (and training learned ones); results
# are reported on the evaluation seeds, which never overlap them.
TUNING_SEEDS = tuple(range(0, 128))
EVALUATION_SEEDS = (1001, 1002, 1003)

DEFAULTS = {
    "requests": 20000,
    "warmup_fraction": 0.1,
    "timeout_ms": 2000.0,
    "seeds": list(EVALUATION_SEEDS),
    "servers": [{"count": 10, "speed": 1.0, "workers": 1}],
    "service_time": {"dist": "exponential", "mean_ms": 50.0, "sigma": 1.0, "alpha": 2.5},
    "arrivals": {"kind": "poisson", "utilization": 0.8},
    "network_ms": {"base": 1.0, "jitter": 0.5},
    "events": [],
    "info": {"model": "registry", "heartbeat_ms": 1000.0, "report_delay_ms": 20.0, "clients": 1},
}

DISTS = ("exponential", "lognormal", "pareto", "constant")
MODELS = ("registry", "fresh", "multi")


class ScenarioError(ValueError):
    pass


def _merge(defaults: dict, given: dict) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(source) -> dict:
    """A scenario from a path, a JSON string's file, or a dict, with defaults filled in."""
    if isinstance(source, dict):
        raw = source
        origin = raw.get("name", "<dict>")
    else:
        path = Path(source)
        origin = str(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ScenarioError(f"{origin}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{origin}: a scenario is a JSON object")
    sc = _merge(DEFAULTS, raw)
    sc.setdefault("name", Path(origin).stem)
    validate(sc, origin)
    return sc


def validate(sc: dict, origin: str = "scenario") -> None:
    def fail(msg):
        raise ScenarioError(f"{origin}: {msg}")

    if not isinstance(sc.get("name"), str) or not sc["name"]:
        fail("name must be a non-empty string")
    if not isinstance(sc["requests"], int) or sc["requests"] < 10:
        fail("requests must be an integer >= 10")
    if not 0.0 <= float(sc["warmup_fraction"]) < 1.0:
        fail("warmup_fraction must be in [0, 1)")
    if float(sc["timeout_ms"]) <= 0:
        fail("timeout_ms must be > 0")
    if not sc["seeds"] or not all(isinstance(s, int) for s in sc["seeds"]):
        fail("seeds must be a non-empty list of integers")
    if not sc["servers"]:
        fail("servers must not be empty")
    for group in sc["servers"]:
        if int(group.get("count", 1)) < 1 or float(group.get("speed", 1.0)) <= 0 or int(group.get("workers", 1)) < 1:
            fail(f"bad server group {group}")
    st = sc["service_time"]
    if st.get("dist") not in DISTS:
        fail(f"service_time.dist must be one of {DISTS}")
    if float(st.get("mean_ms", 0)) <= 0:
        fail("service_time.mean_ms must be > 0")
    if st["dist"] == "pareto" and float(st.get("alpha", 2.5)) <= 1.0:
        fail("pareto alpha must be > 1 (finite mean)")
    arr = sc["arrivals"]
    if arr.get("kind") not in ("poisson", "mmpp"):
        fail("arrivals.kind must be poisson or mmpp")
    if float(arr.get("utilization", 0)) <= 0:
        fail("arrivals.utilization must be > 0")
    if arr["kind"] == "mmpp":
        for key in ("high", "low", "mean_sojourn_ms"):
            if float(arr.get(key, 0)) <= 0:
                fail(f"arrivals.{key} must be > 0 for mmpp")
    n = server_count(sc)
    for ev in sc["events"]:
        if "every_ms" in ev:
            if float(ev["every_ms"]) <= 0 or not 1 <= int(ev.get("count", 1)) <= n:
                fail(f"bad rotating event {ev}")
            lo, hi = ev.get("speed_range", [0.1, 1.0])
            if not 0 < float(lo) <= float(hi):
                fail(f"bad speed_range in {ev}")
            continue
        if not 0.0 <= float(ev.get("start", 0.0)) <= float(ev.get("end", 1.0)) <= 1.0:
            fail(f"event start/end must satisfy 0 <= start <= end <= 1: {ev}")
        if not ev.get("servers") or not all(0 <= int(i) < n for i in ev["servers"]):
            fail(f"event servers must be indices in [0, {n}): {ev}")
        if "speed" not in ev and "fail_rate" not in ev:
            fail(f"event needs speed or fail_rate: {ev}")
        if "speed" in ev and float(ev["speed"]) <= 0:
            fail(f"event speed must be > 0: {ev}")
        if "fail_rate" in ev and not 0.0 <= float(ev["fail_rate"]) <= 1.0:
            fail(f"fail_rate must be in [0, 1]: {ev}")
    info = sc["info"]
    if info.get("model") not in MODELS:
        fail(f"info.model must be one of {MODELS}")
    if float(info.get("heartbeat_ms", 1000.0)) <= 0 or float(info.get("report_delay_ms", 0.0)) < 0:
        fail("info.heartbeat_ms must be > 0 and report_delay_ms >= 0")
    if int(info.get("clients", 1)) < 1:
        fail("info.clients must be >= 1")
    if not 0.0 <= float(info.get("report_loss", 0.0)) < 1.0:
        fail("info.report_loss must be in [0, 1)")


def server_count(sc: dict) -> int:
    return sum(int(g.get("count", 1)) for g in sc["servers"])


def builtin_paths() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.json"))


def builtin() -> list[dict]:
    """The shipped scenarios, in file-name order."""
    return [load(p) for p in builtin_paths()]


def by_name(name: str) -> dict:
    """A built-in scenario by name (or a path to a scenario file)."""
    path = Path(name)
    if path.suffix == ".json" and path.exists():
        return load(path)
    for p in builtin_paths():
        sc = load(p)
        if sc["name"] == name or p.stem == name:
            return sc
    raise ScenarioError(f"no built-in scenario named {name!r}")
