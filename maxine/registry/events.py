"""Change events: one model, a bounded history, live subscribers, index waiters.

Every registry mutation becomes one :class:`Event` whose ``id`` is the
registry's modify index (so event ids, ``X-Maxine-Index`` and the per-service
index of blocking queries are one monotonic sequence, persisted with the
state). Events carry the diff: the instance before and after.

Everything here runs on the event loop thread (registry mutations happen
there), so fan-out is plain function calls: an event is encoded once and put
into each matching subscriber's queue; a blocking query waits on a future
filed under its service name only, so unrelated writes wake nobody.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from typing import Callable

import orjson

from .encoding import dumps_kept
from .registry import Change, Registry

log = logging.getLogger("maxine.events")

SELF_PRESERVATION_ON = "self_preservation_on"
SELF_PRESERVATION_OFF = "self_preservation_off"
RESYNC = "resync"


class Event:
    """One change event, kept as its JSON: a retained history of 10,000 events is
    10,000 small objects for the garbage collector to walk, not 40,000."""

    __slots__ = ("id", "event", "service_name", "node_id", "json", "_sse")

    def __init__(self, id: int, event: str, service_name: str | None, node_id: str | None,
                 data: dict, timestamp_ms: float):
        self.id = id
        self.event = event
        self.service_name = service_name
        self.node_id = node_id
        self.json: bytes = dumps_kept({"id": id, "event": event, "serviceName": service_name,
                                       "nodeId": node_id, "data": data, "timestamp": timestamp_ms})
        self._sse: bytes | None = None

    def to_dict(self) -> dict:
        return orjson.loads(self.json)

    @property
    def data(self) -> dict:
        return self.to_dict()["data"]

    @property
    def timestamp(self) -> float:
        return self.to_dict()["timestamp"]

    @property
    def sse(self) -> bytes:
        """The Server-Sent Events frame, encoded once for every subscriber."""
        if self._sse is None:
            self._sse = b"id: %d\nevent: %s\ndata: %s\n\n" % (self.id, self.event.encode(), self.json)
        return self._sse

    def matches(self, event: str | None = None, service_name: str | None = None,
                node_id: str | None = None) -> bool:
        return ((event is None or self.event == event)
                and (service_name is None or self.service_name == service_name)
                and (node_id is None or self.node_id == node_id))


class Subscriber:
    """One live consumer (SSE stream, WebSocket). A consumer that falls more
    than ``maxsize`` events behind is cut off (``overflowed``) rather than
    silently skipping events; it resumes from its last id."""

    __slots__ = ("queue", "filters", "overflowed", "closed")

    def __init__(self, filters: dict | None = None, maxsize: int = 10000):
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)
        self.filters = filters or {}
        self.overflowed = False
        self.closed = False

    def offer(self, event: Event) -> None:
        if self.overflowed or not event.matches(**self.filters):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # the reader sees it once it drains the queue
            log.warning("event subscriber fell %d events behind; disconnecting it", self.queue.maxsize)


class EventHub:
    """Registry listener turning changes into events, with history and fan-out."""

    def __init__(self, registry: Registry, history: int = 10000, clock: Callable[[], float] | None = None):
        self.registry = registry
        self.capacity = max(1, history)
        self.trim_step = max(1, self.capacity // 16)
        self.clock = clock or registry.clock
        self._events: list[Event] = []
        self._ids: list[int] = []
        self.subscribers: set[Subscriber] = set()
        self.sinks: list[Callable[[Event], None]] = []  # MQTT and other publishers
        self.service_index: dict[str, int] = {name: svc.index for name, svc in registry.services.items()}
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self.published = 0
        registry.listeners.append(self.on_change)

    # --- producing ---------------------------------------------------------------
    def on_change(self, change: Change) -> None:
        self.service_index[change.service_name] = change.index
        if len(self.service_index) > 100_000:  # forget indexes of long-gone services
            for name in [n for n in self.service_index if n not in self.registry.services
                         and n not in self._waiters][:50_000]:
                del self.service_index[name]
        event = Event(change.index, change.kind, change.service_name, change.node_id,
                      {"before": change.before, "after": change.after}, change.timestamp * 1000.0)
        self._publish(event)
        waiters = self._waiters.pop(change.service_name, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(change.index)

    def announce(self, kind: str, data: dict) -> Event:
        """An event that is not an instance change (self-preservation, ...).

        It takes the next modify index, so ids stay one monotonic sequence."""
        self.registry.index += 1
        event = Event(self.registry.index, kind, None, None, data, self.clock() * 1000.0)
        self._publish(event)
        return event

    def _publish(self, event: Event) -> None:
        self._events.append(event)
        self._ids.append(event.id)
        if len(self._events) > self.capacity + self.trim_step:
            # amortised O(1), in small steps: freeing a whole history's worth of
            # events at once held the event loop for ~20 ms (and doubled the memory)
            del self._events[:-self.capacity]
            del self._ids[:-self.capacity]
        self.published += 1
        for sub in self.subscribers:
            sub.offer(event)
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:
                log.exception("event sink failed")

    # --- history -----------------------------------------------------------------
    @property
    def last_id(self) -> int:
        return self.registry.index

    def oldest_id(self) -> int | None:
        start = max(0, len(self._events) - self.capacity)
        return self._ids[start] if len(self._ids) > start else None

    def since(self, since: int, limit: int | None = None, **filters) -> tuple[list[Event], bool]:
        """Retained events with id > since (oldest first) and whether the history
        still reaches back to ``since`` (False: some were dropped; resync)."""
        start = max(0, len(self._events) - self.capacity)
        pos = max(start, bisect.bisect_right(self._ids, since))
        first = self._ids[start] if len(self._ids) > start else self.registry.index + 1
        complete = first <= since + 1 and since <= self.registry.index
        out: list[Event] = []
        events = self._events
        for i in range(pos, len(events)):
            ev = events[i]
            if not filters or ev.matches(**filters):
                out.append(ev)
                if limit is not None and len(out) >= limit:
                    break
        return out, complete

    def reset_base(self) -> None:
        """After loading persisted state: history starts at the current index."""
        self._events.clear()
        self._ids.clear()
        self.service_index = {name: svc.index for name, svc in self.registry.services.items()}

    # --- live subscribers -------------------------------------------------------------
    def subscribe(self, since: int | None = None, **filters) -> tuple[Subscriber, list[Event], bool]:
        """Register a subscriber and return the backlog after ``since`` atomically
        (same loop tick), so nothing falls between history and the live feed."""
        sub = Subscriber({k: v for k, v in filters.items() if v is not None})
        backlog, complete = ([], True) if since is None else self.since(since, None, **sub.filters)
        self.subscribers.add(sub)
        return sub, backlog, complete

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.closed = True
        self.subscribers.discard(sub)

    # --- blocking queries ---------------------------------------------------------------
    def index_of(self, service_name: str) -> int:
        svc = self.registry.services.get(service_name)
        if svc is not None:
            return svc.index
        return self.service_index.get(service_name, 0)

    async def wait_for(self, service_name: str, index: int, timeout: float) -> int:
        """Wait until ``service_name``'s index moves past ``index`` or the timeout
        passes; return its index. Only changes to this service wake the waiter."""
        current = self.index_of(service_name)
        if current > index or timeout <= 0:
            return current
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(service_name, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(service_name)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[service_name]
        return self.index_of(service_name)

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())
