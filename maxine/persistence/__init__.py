"""Durability and change propagation wired onto a :class:`~maxine.api.operations.Maxine`.

:func:`install` attaches the event hub, the configured store (memory, file,
redis), the lease sweeper with self-preservation and the optional MQTT
publisher, and appends their background jobs to ``maxine.background``.
Discovery never touches the store: the registry stays the in-memory source.
"""

from __future__ import annotations

import logging

from ..registry.events import EventHub
from . import state
from .sweeper import Sweeper, expire_locally

log = logging.getLogger("maxine.persistence")


def install(maxine) -> None:
    if getattr(maxine, "events", None) is not None:
        return
    s = maxine.settings
    registry = maxine.registry
    hub = EventHub(registry, s.event_history)
    maxine.events = hub
    sweeper = Sweeper(registry, s.sweep_interval, s.self_preservation_threshold, s.self_preservation_window, hub)
    maxine.sweeper = sweeper
    maxine.shutdown_hooks = getattr(maxine, "shutdown_hooks", [])
    expire = None
    if s.persistence == "file":
        from .file import FileStore

        store = FileStore(registry, s.data_dir, s.fsync, s.fsync_interval, s.snapshot_interval,
                          flush_interval=min(1.0, s.fsync_interval))
        doc = store.load()
        state.load_quietly(registry, doc)
        hub.reset_base()
        store.open()
        registry.listeners.remove(store.on_change)
        registry.listeners.insert(0, store.on_change)  # journal before anyone hears of it
        store.writable = True
        store.unavailable_message = lambda: "persistence unavailable"
        maxine.store = store
        maxine.background.append(store.run)
        maxine.shutdown_hooks.append(store.close)
        expire = store.expire
        if doc["instances"]:
            sweeper.grace_until = registry.clock() + s.restart_grace
        log.info("loaded %d instances at index %d from %s", len(doc["instances"]), registry.index, s.data_dir)
    elif s.persistence == "redis":
        from .redis_store import RedisStore

        store = RedisStore(maxine, s.redis_url, s.redis_prefix)
        store.start()
        hub.reset_base()
        maxine.store = store
        maxine.background.append(store.run)
        maxine.shutdown_hooks.append(store.close)
        expire = store.expire
        if registry.nodes:
            sweeper.grace_until = registry.clock() + s.restart_grace
    if expire is None:
        async def expire(insts):
            return await expire_locally(registry, insts)

    async def sweep(_maxine) -> None:
        await sweeper.run(expire)

    maxine.background.insert(0, sweep)
    if s.mqtt_url:
        from ..api.mqtt import MqttPublisher

        publisher = MqttPublisher(s.mqtt_url, s.mqtt_topic)
        publisher.start()
        hub.sinks.append(publisher.publish)
        maxine.mqtt = publisher
        maxine.shutdown_hooks.append(publisher.stop)
