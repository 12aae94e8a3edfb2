"""The registry: services, their instances, leases, and change notifications.

It knows nothing about HTTP or balancing. Every mutation bumps a global
modify index, stamps it on the affected service (Consul-style per-service
index) and tells the listeners with a :class:`Change` carrying before/after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import orjson

from .instance import Instance, node_id_for
from .leases import LeaseHeap
from .versions import highest

REGISTERED = "service_registered"
UPDATED = "service_updated"
DEREGISTERED = "service_deregistered"
EXPIRED = "service_expired"


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    service_name: str
    node_id: str
    before: dict | None
    after: dict | None
    index: int
    timestamp: float
    instance: Instance  # the object itself (already out of the registry when it left)


class Pool:
    """An immutable candidate set for one (service, version, tags) query.

    Pools are rebuilt when membership or metadata changes, so strategies may
    cache derived structures (cumulative weights, hash rings) in ``cache``.
    ``query`` is the ``(version, tags)`` it answers: the pools of one service
    and query, before and after a change, share it. When the service changes the
    pool is dropped: ``stale`` turns True and it is emptied (its one change), so a
    caller that kept it asks for a new one."""

    __slots__ = ("service_name", "nodes", "cache", "query", "stale")

    def __init__(self, service_name: str, nodes: tuple, query: tuple = (None, ())):
        self.service_name = service_name
        self.nodes = nodes
        self.cache: dict = {}
        self.query = query
        self.stale = False

    def __len__(self) -> int:
        return len(self.nodes)


class Service:
    __slots__ = ("name", "instances", "pools", "index", "_metadata_seen")

    SHARED_METADATA = 4  # distinct metadata objects remembered per service

    def __init__(self, name: str):
        self.name = name
        self.instances: dict[str, Instance] = {}
        self.pools: dict[tuple, Pool] = {}  # by query; forget them only through drop_pools
        self.index = 0
        self._metadata_seen: list[tuple[bytes, dict]] = []

    def drop_pools(self) -> None:
        """Forget the cached pools, marking them stale for whoever kept one (a cached
        discovery query) and emptying them, so that a query nobody sends again does not
        keep removed instances, or the strategies' books of them, alive."""
        for pool in self.pools.values():
            pool.stale = True
            pool.nodes = ()
            pool.cache.clear()
        self.pools.clear()

    def shared_metadata(self, metadata: dict) -> dict:
        """An identical metadata object already held by this service, else ``metadata``.

        Instances of a service mostly carry the same metadata, and an instance's
        metadata is replaced, never changed in place, so one object can serve
        them all. Identical means the same JSON (so 1 and 1.0 stay distinct)."""
        try:
            key = orjson.dumps(metadata)
        except TypeError:  # not JSON (in-process callers): keep it unshared
            return metadata
        seen = self._metadata_seen
        for known_key, known in seen:
            if known_key == key:
                return known
        if len(seen) >= self.SHARED_METADATA:
            del seen[0]
        seen.append((memoryview(key).tobytes(), metadata))  # see encoding.dumps_kept
        return metadata


class Registry:
    def __init__(self, default_ttl: float = 30.0, clock: Callable[[], float] = time.time,
                 dispatch_ttl: float = 30.0):
        self.default_ttl = default_ttl
        self.dispatch_ttl = dispatch_ttl
        self.clock = clock
        self.services: dict[str, Service] = {}
        self.nodes: dict[str, Instance] = {}
        self.leases = LeaseHeap()
        self.index = 0
        self.listeners: list[Callable[[Change], None]] = []
        # Called with the instance when a lease moves without a change event
        # (heartbeat, same-metadata re-register): persistence batches these.
        self.on_renew: Callable[[Instance], None] | None = None
        self.counters = {"registrations": 0, "deregistrations": 0, "expiries": 0, "heartbeats": 0}

    # --- mutations -----------------------------------------------------------
    def register(self, service_name: str, host: str, port: int, metadata: dict | None = None,
                 ttl: float | None = None) -> Instance:
        """Add an instance, or refresh its lease and replace its metadata.

        An instance whose lease passed but that the sweeper has not expired is
        refreshed like a live one: only the sweeper decides expiries (it applies
        self-preservation and, in Redis mode, decides each expiry once)."""
        now = self.clock()
        ttl = float(ttl) if ttl is not None else self.default_ttl
        svc = self._service(service_name)
        service_name = svc.name  # one string object per service, not one per instance
        metadata = svc.shared_metadata(metadata or {})
        node_id = node_id_for(service_name, host, port)
        self.counters["registrations"] += 1
        inst = self.nodes.get(node_id)
        if inst is None:
            inst = Instance(service_name, host, port, metadata, ttl, now, self.dispatch_ttl)
            self._add(inst, now)
            return inst
        changed = inst.metadata != metadata
        before = inst.describe(now) if changed else None
        inst.ttl = ttl
        self._renew(inst, now)
        self.leases.schedule(inst)
        if changed:
            inst.set_metadata(metadata)
            self._touch(svc)
            self._emit(UPDATED, inst, before, inst.describe(now), now)
        return inst

    def heartbeat(self, node_id: str, load: dict | None = None) -> Instance | None:
        """Renew a lease; None if the node is unknown (never registered, or expired by the sweeper)."""
        now = self.clock()
        inst = self.nodes.get(node_id)
        if inst is None:
            return None
        self._renew(inst, now)
        self.counters["heartbeats"] += 1
        if load:
            inst.state.on_load_report(now, **load)
        return inst

    def _renew(self, inst: Instance, now: float) -> None:
        """Move the lease to ``now + ttl``. A lease that had passed may have been
        left out of cached pools, which are rebuilt so it is served again."""
        if not inst.alive(now):
            self.drop_pools(inst.service_name)
        inst.last_heartbeat = now
        inst.deadline = now + inst.ttl
        if self.on_renew is not None:
            self.on_renew(inst)

    def deregister(self, node_id: str) -> bool:
        inst = self.nodes.get(node_id)
        if inst is None:
            return False
        self.counters["deregistrations"] += 1
        self._remove(inst, DEREGISTERED, self.clock())
        return True

    def expire(self, inst: Instance) -> None:
        if self.nodes.get(inst.node_id) is inst:
            self._remove(inst, EXPIRED, self.clock())

    def set_deadline(self, inst: Instance, deadline: float, last_heartbeat: float | None = None) -> None:
        """Move a lease without a change event (a renewal seen by another replica,
        the sweeper holding or releasing it). An instance whose lease had passed may
        have been left out of its service's cached pools, so they are rebuilt."""
        passed = not inst.alive(self.clock())
        inst.deadline = deadline
        if last_heartbeat is not None:
            inst.last_heartbeat = last_heartbeat
        self.leases.schedule(inst)
        if passed:
            self.drop_pools(inst.service_name)

    def drop_pools(self, service_name: str) -> None:
        """Forget a service's cached pools; the next query rebuilds them from live instances."""
        svc = self.services.get(service_name)
        if svc is not None:
            svc.drop_pools()

    def sweep(self, limit: int = 1000) -> int:
        """Expire up to ``limit`` instances whose lease has passed."""
        now = self.clock()
        due = list(self.leases.pop_due(now, lambda i: self.nodes.get(i.node_id) is i, limit))
        for inst in due:
            self._remove(inst, EXPIRED, now)
        return len(due)

    def restore_instance(self, record: dict) -> Instance:
        """Re-create an instance from :meth:`Instance.to_record`, keeping its
        lease deadline (a restart must not hand out fresh TTLs)."""
        now = self.clock()
        inst = Instance(record["serviceName"], record["host"], int(record["port"]),
                        record.get("metadata") or {}, float(record["ttl"]), now, self.dispatch_ttl)
        inst.registered_at = record.get("registeredAt", now)
        inst.last_heartbeat = record.get("lastHeartbeat", now)
        inst.deadline = float(record["deadline"])
        old = self.nodes.get(inst.node_id)
        if old is not None:
            self._remove(old, DEREGISTERED, now)
        self._add(inst, now)
        return inst

    # --- reads ---------------------------------------------------------------
    def get(self, node_id: str) -> Instance | None:
        inst = self.nodes.get(node_id)
        return inst if inst is not None and inst.alive(self.clock()) else None

    def service(self, name: str) -> Service | None:
        return self.services.get(name)

    def live_instances(self, name: str) -> list[Instance]:
        svc = self.services.get(name)
        if svc is None:
            return []
        now = self.clock()
        return [i for i in svc.instances.values() if i.alive(now)]

    def pool(self, service_name: str, version: str | None = None, tags: tuple = ()) -> Pool | None:
        """The candidates for a discovery query, cached until the service changes.

        An instance whose lease passed may still sit in a cached pool until the
        sweeper decides its fate; callers check the deadline of what they pick
        and :meth:`drop_pools` to rebuild without it."""
        svc = self.services.get(service_name)
        if svc is None:
            return None
        key = (version, tags)
        pool = svc.pools.get(key)
        if pool is None:
            if len(svc.pools) > 256:  # bounded: arbitrary tag combinations must not grow memory
                svc.drop_pools()
            pool = svc.pools[key] = Pool(service_name, self._select(svc, version, tags), key)
        return pool

    def _select(self, svc: Service, version: str | None, tags: tuple) -> tuple:
        now = self.clock()
        nodes = [i for i in svc.instances.values() if i.alive(now)]
        if tags:
            wanted = frozenset(tags)
            nodes = [i for i in nodes if wanted <= i.tags]
        if version == "latest":
            version = highest({i.version for i in nodes})
            if version is None:
                return tuple(nodes)
        if version is not None:
            nodes = [i for i in nodes if i.version == version]
        return tuple(sorted(nodes, key=lambda i: i.node_id))

    def versions(self, service_name: str) -> list[str]:
        from .versions import version_key
        return sorted({i.version for i in self.live_instances(service_name) if i.version is not None},
                      key=version_key)

    def next_deadline(self) -> float | None:
        return self.leases.next_deadline()

    # --- internals -----------------------------------------------------------
    def _service(self, name: str) -> Service:
        svc = self.services.get(name)
        if svc is None:
            svc = self.services[name] = Service(name)
        return svc

    def _add(self, inst: Instance, now: float) -> None:
        svc = self._service(inst.service_name)
        svc.instances[inst.node_id] = inst
        self.nodes[inst.node_id] = inst
        self.leases.schedule(inst)
        self._touch(svc)
        self._emit(REGISTERED, inst, None, inst.describe(now), now)

    def _remove(self, inst: Instance, kind: str, now: float) -> None:
        svc = self.services[inst.service_name]
        del svc.instances[inst.node_id]
        del self.nodes[inst.node_id]
        inst.scheduled_deadline = None
        if kind == EXPIRED:
            self.counters["expiries"] += 1
        self._touch(svc)
        if not svc.instances:
            del self.services[svc.name]
        self._emit(kind, inst, inst.describe(now), None, now)

    def _touch(self, svc: Service) -> None:
        self.index += 1
        svc.index = self.index
        svc.drop_pools()

    def _emit(self, kind: str, inst: Instance, before, after, now: float) -> None:
        if not self.listeners:
            return
        change = Change(kind, inst.service_name, inst.node_id, before, after, self.index, now, inst)
        for listener in self.listeners:
            listener(change)
