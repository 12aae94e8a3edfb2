"""In-process tests: event history bounds and resync, self-preservation, the benchmark."""

from __future__ import annotations

from functools import partial
import asyncio

from conftest import ManualClock
from maxine.persistence.sweeper import Sweeper, expire_locally
from maxine.registry import Registry
from maxine.registry.events import EventHub


Clock = partial(ManualClock, 1000.0)


def test_history_is_bounded_and_reports_gaps():
    reg = Registry(clock=Clock())
    hub = EventHub(reg, history=5)
    for port in range(1, 21):
        reg.register("s", "h", port)
    events, complete = hub.since(0)
    assert not complete and [e.id for e in events][-1] == 20 and len(events) >= 5
    events, complete = hub.since(17)
    assert complete and [e.id for e in events] == [18, 19, 20]
    assert hub.since(20) == ([], True)
    assert hub.since(25)[1] is False  # an id from the future (another server): resync


def test_waiters_are_per_service():
    async def run():
        reg = Registry(clock=Clock())
        hub = EventHub(reg)
        reg.register("a", "h", 1)
        index = hub.index_of("a")
        waiter = asyncio.create_task(hub.wait_for("a", index, 5))
        await asyncio.sleep(0)
        for port in range(10):
            reg.register("b", "h", port)
        await asyncio.sleep(0.01)
        assert not waiter.done()
        reg.deregister("a:h:1")  # last instance leaves: its index is kept
        assert await asyncio.wait_for(waiter, 1) > index
        assert hub.index_of("a") == reg.index - 0 or hub.index_of("a") > index
    asyncio.run(run())


def test_self_preservation_holds_then_resumes():
    async def run():
        clock = Clock()
        reg = Registry(default_ttl=10, clock=clock)
        hub = EventHub(reg)
        sweeper = Sweeper(reg, interval=0.2, threshold=0.15, window=15, hub=hub)

        async def expire(insts):
            return await expire_locally(reg, insts)

        for port in range(20):
            reg.register("svc", "h", port)
        clock.t += 5
        reg.heartbeat("svc:h:0")
        clock.t += 6  # 19 of 20 leases passed at once: the registry's own network is suspect
        assert await sweeper.tick(expire) == 0
        assert sweeper.active and len(reg.nodes) == 20
        assert [e.event for e in hub.since(0)[0]][-1] == "self_preservation_on"
        assert len(reg.live_instances("svc")) == 20  # still served while held
        for port in range(1, 18):  # heartbeats recover for 17 of the 19
            reg.heartbeat(f"svc:h:{port}")
        clock.t += 0.5
        await sweeper.tick(expire)
        assert not sweeper.active
        clock.t += 0.2
        assert await sweeper.tick(expire) == 2  # the two that never came back expire normally
        kinds = [e.event for e in hub.since(0)[0]]
        assert kinds[-3:] == ["self_preservation_off", "service_expired", "service_expired"]
        # a normal death does not trigger it
        clock.t += 9.5
        for port in range(0, 17):
            reg.heartbeat(f"svc:h:{port}")
        clock.t += 1
        assert await sweeper.tick(expire) == 1 and not sweeper.active
    asyncio.run(run())


def test_bench_events_runs():
    from maxine.bench.events import bench_events_main

    assert bench_events_main(["--subscribers", "10", "--events", "10", "--target-p99-ms", "1000"]) == 0
