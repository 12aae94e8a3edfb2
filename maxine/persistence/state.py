"""The registry's durable state as one document (snapshots, /backup, /restore).

``{"format": "maxine-state", "version": 1, "index": N, "savedAt": seconds,
"services": {name: index}, "instances": [Instance.to_record(), ...]}``

Leases are stored as absolute deadlines (seconds since the epoch), never as
TTLs, so a restart or a restore cannot extend a lease.
"""

from __future__ import annotations

import math

from ..registry import Registry

FORMAT = "maxine-state"
VERSION = 1
MAX_PROBLEMS = 20


def dump(registry: Registry, now: float) -> dict:
    return {
        "format": FORMAT, "version": VERSION, "index": registry.index, "savedAt": now,
        "services": {name: svc.index for name, svc in registry.services.items()},
        "instances": [inst.to_record() for inst in registry.nodes.values()],
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(doc) -> list[str]:
    """Every problem with a state document; empty when it can be applied whole."""
    from ..api import validation  # late: maxine.api imports this package

    if not isinstance(doc, dict):
        return ["document: must be a JSON object"]
    problems = []
    if doc.get("format") != FORMAT:
        problems.append(f"format: must be {FORMAT!r}")
    if doc.get("version") != VERSION:
        problems.append(f"version: must be {VERSION}")
    if not (isinstance(doc.get("index"), int) and not isinstance(doc.get("index"), bool) and doc["index"] >= 0):
        problems.append("index: must be an integer >= 0")
    services = doc.get("services", {})
    if not isinstance(services, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in services.values()):
        problems.append("services: must map service names to integer indexes")
    instances = doc.get("instances")
    if not isinstance(instances, list):
        problems.append("instances: must be a list")
        return problems
    seen = set()
    for n, rec in enumerate(instances):
        if len(problems) >= MAX_PROBLEMS:
            problems.append("... (more problems not listed)")
            break
        where = f"instances[{n}]"
        if not isinstance(rec, dict):
            problems.append(f"{where}: must be an object")
            continue
        fields = None
        try:
            fields = validation.register({"serviceName": rec.get("serviceName"), "host": rec.get("host"),
                                          "port": rec.get("port"), "metadata": rec.get("metadata") or {},
                                          "ttl": rec.get("ttl")})
        except validation.Invalid as exc:
            problems.extend(f"{where}.{d}" for d in exc.details)
        if rec.get("ttl") is None:
            problems.append(f"{where}.ttl: required, seconds")
        for key in ("deadline", "registeredAt", "lastHeartbeat"):
            if key == "deadline" or key in rec:
                if not _finite(rec.get(key)) or rec.get(key) < 0:
                    problems.append(f"{where}.{key}: must be a finite number of seconds since the epoch")
        if fields is None:
            continue
        node = (fields["service_name"], fields["host"], fields["port"])
        if node in seen:
            problems.append(f"{where}: duplicate instance {':'.join(map(str, node))}")
        seen.add(node)
    return problems


def apply(registry: Registry, doc: dict, replace: bool = True) -> int:
    """Make the registry hold exactly the document's instances (validated first).

    Changes flow through the registry, so listeners (journal, Redis, events)
    see each one. Returns the number of instances loaded."""
    wanted = {}
    for rec in doc["instances"]:
        node_id = f"{rec['serviceName']}:{rec['host']}:{int(rec['port'])}"
        wanted[node_id] = rec
    if replace:
        for node_id in [n for n in registry.nodes if n not in wanted]:
            registry.deregister(node_id)
    for rec in wanted.values():
        registry.restore_instance(rec)
    return len(wanted)


def load_quietly(registry: Registry, doc: dict) -> None:
    """Load persisted state at startup: no listeners fire, indexes are restored."""
    listeners, registry.listeners = registry.listeners, []
    try:
        for rec in doc["instances"]:
            registry.restore_instance(rec)
        for name, index in (doc.get("services") or {}).items():
            svc = registry.services.get(name)
            if svc is not None:
                svc.index = index
        registry.index = max(registry.index, doc.get("index", 0),
                             max((s.index for s in registry.services.values()), default=0))
    finally:
        registry.listeners = listeners
