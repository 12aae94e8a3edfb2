"""Lease expiry with self-preservation.

Each tick pops the leases that are due. Normally they expire. But if more
than ``threshold`` of the registry would expire within one ``window`` (the
expiries already done in the window plus those due now), the registry
assumes the failure is on its own side (a network event, a long pause, a
restart) and stops evicting: due instances are held — their lease is
pushed a little into the future so discovery keeps serving them, as Eureka
does — and an event, ``/health`` and ``/metrics`` say so. When enough held
instances heartbeat again (the stale fraction is back under the threshold),
eviction resumes and the instances that never came back expire normally.

The final "expire" step is pluggable: in Redis mode it is a conditional
delete in Redis, so one replica decides each expiry.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from ..registry import Registry

log = logging.getLogger("maxine.sweeper")

MIN_NODES = 10  # below this, every death is plausible: never self-preserve


class Sweeper:
    def __init__(self, registry: Registry, interval: float = 0.2, threshold: float = 0.15,
                 window: float = 15.0, hub=None, batch: int = 100):
        self.registry = registry
        self.interval = interval
        self.threshold = threshold
        self.window = window
        self.hub = hub
        self.batch = batch
        self.recent: deque = deque()  # (time, count) of expiries inside the window
        self.recent_total = 0
        self.active = False
        self.since: float | None = None
        self.held: dict[str, object] = {}
        self.activations = 0
        self.paused_reason: str | None = None  # e.g. "redis unavailable": hold, don't expire
        self.grace_until = 0.0
        self.started_at = registry.clock()

    def hold_for(self) -> float:
        return max(1.0, 5 * self.interval)

    def _prune(self, now: float) -> None:
        while self.recent and self.recent[0][0] <= now - self.window:
            self.recent_total -= self.recent.popleft()[1]

    async def collect_due(self, now: float) -> list:
        """Every instance whose lease has passed, popped in batches with a yield
        between them, so a mass expiry does not hold the event loop."""
        registry = self.registry
        current = lambda i: registry.nodes.get(i.node_id) is i  # noqa: E731
        due = []
        while True:
            batch = list(registry.leases.pop_due(now, current, self.batch))
            due += batch
            if len(batch) < self.batch:
                return due
            await asyncio.sleep(0)

    def hold(self, insts, now: float) -> None:
        until = now + self.hold_for()
        for inst in insts:
            self.registry.set_deadline(inst, max(inst.deadline, until))
            if self.active:
                self.held[inst.node_id] = inst

    async def tick(self, expire) -> int:
        """One sweep; ``expire(list)`` removes instances and returns how many it expired."""
        registry = self.registry
        now = registry.clock()
        self._prune(now)
        due = await self.collect_due(now)
        if self.active:
            self._check_recovery(now)
        if not due:
            return 0
        if self.paused_reason is not None:
            self.hold(due, now)
            return 0
        if now < self.grace_until:
            # Just restarted: leases that ran out while we were down expire now;
            # leases running out during the grace window wait for a heartbeat.
            graced = [i for i in due if i.deadline >= self.started_at]
            for inst in graced:
                registry.set_deadline(inst, max(inst.deadline, self.grace_until))
            due = [i for i in due if i.deadline < self.started_at]
            if not due:
                return 0
        if not self.active and self.threshold > 0:
            population = len(registry.nodes) + self.recent_total
            if population >= MIN_NODES and self.recent_total + len(due) > self.threshold * population:
                self._activate(now, len(due), population)
        if self.active:
            self.hold(due, now)
            return 0
        expired = 0
        for start in range(0, len(due), self.batch):
            expired += await expire(due[start:start + self.batch])
            if start + self.batch < len(due):
                await asyncio.sleep(0)
        if expired:
            self.recent.append((now, expired))
            self.recent_total += expired
        return expired

    def _activate(self, now: float, due: int, population: int) -> None:
        self.active = True
        self.since = now
        self.activations += 1
        log.warning("self-preservation ON: %d of %d instances would expire within %.0f s; eviction paused",
                    self.recent_total + due, population, self.window)
        if self.hub is not None:
            self.hub.announce("self_preservation_on", {"due": due, "expiredInWindow": self.recent_total,
                                                       "population": population, "threshold": self.threshold})

    def _check_recovery(self, now: float) -> None:
        registry = self.registry
        stale = {n: i for n, i in self.held.items()
                 if registry.nodes.get(n) is i and i.last_heartbeat + i.ttl <= now}
        self.held = stale
        total = len(registry.nodes)
        if total and len(stale) > self.threshold * total:
            return
        self.active = False
        log.warning("self-preservation OFF: heartbeats recovered (%d of %d still stale); eviction resumes",
                    len(stale), total)
        for inst in stale.values():  # back to their real lease: they expire on the next ticks
            registry.set_deadline(inst, inst.last_heartbeat + inst.ttl)
        self.held = {}
        self.recent.clear()
        self.recent_total = 0
        if self.hub is not None:
            self.hub.announce("self_preservation_off", {"stillStale": len(stale), "population": total,
                                                        "heldSeconds": now - (self.since or now)})
        self.since = None

    def status(self) -> dict:
        return {"active": self.active, "threshold": self.threshold, "window": self.window,
                "held": len(self.held), "activations": self.activations, "since": self.since,
                "paused": self.paused_reason}

    async def run(self, expire) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick(expire)
            except Exception:
                log.exception("lease sweep failed; retrying next tick")


async def expire_locally(registry: Registry, insts: list) -> int:
    """Expire the instances still due; one renewed since it fell due goes back on the heap."""
    n = 0
    now = registry.clock()
    for inst in insts:
        if registry.nodes.get(inst.node_id) is not inst:
            continue
        if inst.alive(now):
            registry.leases.schedule(inst)
        else:
            registry.expire(inst)
            n += 1
    return n
