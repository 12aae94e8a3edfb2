"""Balancer behaviour, in process, on real registry objects."""

from __future__ import annotations

from functools import partial
import random
from collections import Counter

import numpy as np
import pytest

from conftest import ManualClock
from maxine.balancers import Balancers, PickContext, pickers
from maxine.registry import Pool, Registry


Clock = partial(ManualClock, 1000.0)


def make_pool(n: int, metadata=lambda i: {}, clock=None):
    registry = Registry(clock=clock or Clock())
    for i in range(n):
        registry.register("svc", "10.0.0.1", 1000 + i, metadata(i))
    return registry, registry.pool("svc")


def ctx(now=1000.0, seed=1, **kw):
    return PickContext(now=now, rng=random.Random(seed), **kw)


def test_weighted_random_follows_weights():
    _, pool = make_pool(4, lambda i: {"weight": i + 1})
    strategy = Balancers(["weighted-random"]).get("weighted-random")
    c = ctx()
    counts = Counter(strategy.pick(pool, c).port - 1000 for _ in range(40_000))
    for i in range(4):
        expected = (i + 1) / 10
        assert counts[i] / 40_000 == pytest.approx(expected, abs=0.015)


def test_consistent_hash_is_stable_and_moves_about_one_nth():
    registry = Registry(clock=Clock())
    for i in range(10):
        registry.register("svc", "10.0.0.1", 1000 + i)
    strategy = Balancers(["consistent-hash"]).get("consistent-hash")
    keys = [f"client-{k}" for k in range(5000)]
    before = {k: strategy.pick(registry.pool("svc"), ctx(client_key=k)).node_id for k in keys}
    again = {k: strategy.pick(registry.pool("svc"), ctx(client_key=k)).node_id for k in keys}
    assert before == again
    registry.register("svc", "10.0.0.1", 2000)  # N = 10 -> 11
    after = {k: strategy.pick(registry.pool("svc"), ctx(client_key=k)).node_id for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "svc:10.0.0.1:2000" for k in moved)  # keys only move to the new node
    assert 0.04 < len(moved) / len(keys) < 0.16  # about 1/11


def test_consistent_hash_spreads_keys_evenly_and_a_leaving_node_moves_only_its_own():
    registry = Registry(clock=Clock())
    nodes = [registry.register("svc", "10.0.0.1", 1000 + i) for i in range(20)]
    strategy = Balancers(["consistent-hash"]).get("consistent-hash")
    keys = [f"client-{k}" for k in range(20_000)]
    before = {k: strategy.pick(registry.pool("svc"), ctx(client_key=k)).node_id for k in keys}
    shares = Counter(before.values())
    assert len(shares) == 20 and all(0.6 < count / 1000 < 1.4 for count in shares.values())  # 160 points each
    gone = nodes[7].node_id
    registry.deregister(gone)
    after = {k: strategy.pick(registry.pool("svc"), ctx(client_key=k)).node_id for k in keys}
    assert gone not in after.values()
    assert all(after[k] == before[k] for k in keys if before[k] != gone)


def test_a_large_ring_kept_as_arrays_picks_as_the_list_ring_does(monkeypatch):
    registry = Registry(clock=Clock())
    for i in range(900):
        registry.register("big", f"10.0.{i >> 8}.{i & 255}", 8000)
    keys = [f"client-{k}" for k in range(3000)]

    def picks(list_points):
        monkeypatch.setattr(pickers, "LIST_POINTS", list_points)
        registry.drop_pools("big")
        strategy = Balancers(["consistent-hash"]).get("consistent-hash")
        return [strategy.pick(registry.pool("big"), ctx(client_key=k)).node_id for k in keys]

    as_arrays = picks(0)
    assert picks(10**9) == as_arrays
    assert len(set(as_arrays)) > 850  # and they spread over the ring


def test_a_large_ring_is_updated_on_a_change_to_exactly_the_ring_a_build_gives(monkeypatch):
    monkeypatch.setattr(pickers, "LIST_POINTS", 0)  # every ring is a large one
    built = []  # how many nodes each call to ring_points placed
    build = pickers.ring_points
    monkeypatch.setattr(pickers, "ring_points", lambda ids, *a: built.append(len(ids)) or build(ids, *a))
    registry = Registry(clock=Clock())
    nodes = [registry.register("svc", "10.0.0.1", 1000 + i) for i in range(40)]
    strategy = Balancers(["consistent-hash"]).get("consistent-hash")
    keys = [f"client-{k}" for k in range(2000)]

    def picks():
        return {k: strategy.pick(registry.pool("svc"), ctx(client_key=k)).node_id for k in keys}

    before = picks()
    for i in (3, 17, 39):
        registry.deregister(nodes[i].node_id)
    after_leaving = picks()
    for port in (999, 1017, 1500, 2000, 2001):  # sort before, among and after the others
        registry.register("svc", "10.0.0.1", port)
    after_joining = picks()
    assert built == [40, 5]  # one build, then only the newcomers' points
    pool = registry.pool("svc")
    assert np.array_equal(np.asarray(strategy.ring(pool)), build([n.node_id for n in pool.nodes], range(len(pool)), 160))
    assert all(after_leaving[k] == before[k] for k in keys if before[k] in after_leaving.values())
    moved = [k for k in keys if after_joining[k] != after_leaving[k]]
    assert all(after_joining[k].endswith((":999", ":1017", ":1500", ":2000", ":2001")) for k in moved)


def test_each_query_of_a_service_updates_its_own_large_ring(monkeypatch):
    monkeypatch.setattr(pickers, "LIST_POINTS", 0)
    built = []
    build = pickers.ring_points
    monkeypatch.setattr(pickers, "ring_points", lambda ids, *a: built.append(len(ids)) or build(ids, *a))
    registry = Registry(clock=Clock())
    for i in range(20):
        registry.register("svc", "10.0.0.1", 1000 + i, {"version": "1" if i % 2 else "2"})
    strategy = Balancers(["consistent-hash"]).get("consistent-hash")
    for round_ in range(3):  # each change rebuilds both versions' pools
        for version in ("1", "2"):
            strategy.pick(registry.pool("svc", version), ctx(client_key="k"))
        registry.register("svc", "10.0.0.2", 2000 + round_, {"version": "1"})
    assert built == [10, 10, 1, 1]  # each version's ring built once; then version 1 gains one node a round


def test_the_large_rings_kept_to_update_from_are_bounded(monkeypatch):
    """A removed service's ring waits to be pushed out by LARGE_RINGS_KEPT others; the
    service pushed out builds its next ring afresh."""
    monkeypatch.setattr(pickers, "LIST_POINTS", 0)
    built = []
    build = pickers.ring_points
    monkeypatch.setattr(pickers, "ring_points", lambda ids, *a: built.append(len(ids)) or build(ids, *a))
    registry = Registry(clock=Clock())
    strategy = Balancers(["consistent-hash"]).get("consistent-hash")
    services = [f"svc-{s}" for s in range(pickers.LARGE_RINGS_KEPT + 1)]
    for name in services:
        for i in range(3):
            registry.register(name, "10.0.0.1", 1000 + i)
        strategy.pick(registry.pool(name), ctx(client_key="k"))
    assert len(strategy._large) == pickers.LARGE_RINGS_KEPT
    assert (services[0], (None, ())) not in strategy._large  # the oldest went
    built.clear()
    for name in (services[-1], services[0]):  # one kept, one pushed out: each gains a node
        registry.register(name, "10.0.0.2", 2000)
        strategy.pick(registry.pool(name), ctx(client_key="k"))
    assert built == [1, 4]  # the kept ring is updated; the other is built from scratch
    assert len(strategy._large) == pickers.LARGE_RINGS_KEPT


def test_a_ring_is_built_afresh_when_an_update_would_not_give_the_same_ring():
    old = tuple(f"n{i}" for i in range(10))
    points = pickers.ring_points(old, range(10), 160)
    assert pickers.updated_ring(points, old, tuple(reversed(old)), 160) is None  # renumbered out of order
    assert pickers.updated_ring(points, old, old[:4] + tuple(f"m{i}" for i in range(6)), 160) is None  # mostly new
    kept = old[:6] + ("m0",)
    assert np.array_equal(pickers.updated_ring(points, old, kept, 160), pickers.ring_points(kept, range(7), 160))


def test_ip_hash_keys_on_client_ip():
    _, pool = make_pool(5)
    strategy = Balancers(["ip-hash"]).get("ip-hash")
    picks = {strategy.pick(pool, ctx(client_ip="192.0.2.7", client_key="ignored-" + str(i))).node_id
             for i in range(20)}
    assert len(picks) == 1


def test_least_connections_follows_in_flight():
    clock = Clock()
    _, pool = make_pool(3, clock=clock)
    strategy = Balancers(["least-connections"]).get("least-connections")
    a, b, c = pool.nodes
    for _ in range(3):
        a.state.on_dispatch(clock.t)
    b.state.on_dispatch(clock.t)
    assert strategy.pick(pool, ctx()) is c
    c.state.on_dispatch(clock.t)
    c.state.on_dispatch(clock.t)
    assert strategy.pick(pool, ctx()) is b
    # completions bring a node back
    for _ in range(3):
        a.state.on_result(5.0, True, clock.t)
    assert strategy.pick(pool, ctx()) is a


def test_least_connections_spreads_when_dispatches_are_counted():
    clock = Clock()
    _, pool = make_pool(4, clock=clock)
    strategy = Balancers(["least-connections"]).get("least-connections")
    c = ctx()
    for _ in range(40):
        strategy.pick(pool, c).state.on_dispatch(clock.t)
    assert [n.state.in_flight(clock.t) for n in pool.nodes] == [10, 10, 10, 10]


def test_in_flight_uses_load_report_plus_dispatches_since():
    clock = Clock()
    _, pool = make_pool(1, clock=clock)
    state = pool.nodes[0].state
    for _ in range(5):
        state.on_dispatch(clock.t)
    state.on_load_report(clock.t, in_flight=2)  # the instance says 2 are running
    assert state.in_flight(clock.t) == 2
    state.on_dispatch(clock.t)
    assert state.in_flight(clock.t) == 3
    state.on_result(1.0, True, clock.t)
    state.on_result(1.0, True, clock.t)
    assert state.in_flight(clock.t) == 1


def test_unreported_dispatches_are_forgotten():
    """The original's counter only grew; ours forgets dispatches nobody reported."""
    clock = Clock()
    _, pool = make_pool(1, clock=clock)
    state = pool.nodes[0].state
    for _ in range(100):
        state.on_dispatch(clock.t)
    assert state.in_flight(clock.t) == 100
    clock.t += 31.0
    assert state.in_flight(clock.t) == 0


def drive(strategy, pool, clock, outcome, steps: int) -> Counter:
    """Pick, dispatch and report ``steps`` times, 1 ms apart; ``outcome(node)``
    gives (latency ms, success). Returns picks per port."""
    c = ctx()
    counts = Counter()
    for _ in range(steps):
        clock.t += 0.001
        c.now = clock.t
        node = strategy.pick(pool, c)
        node.state.on_dispatch(clock.t)
        counts[node.port] += 1
        node.state.on_result(*outcome(node), clock.t)
    return counts


@pytest.mark.parametrize("name", ["least-response-time", "p2c-peak-ewma"])
def test_peak_ewma_avoids_a_slow_node(name):
    clock = Clock()
    _, pool = make_pool(5, clock=clock)
    slow = pool.nodes[2]
    counts = drive(Balancers([name]).get(name), pool, clock,
                   lambda node: (100.0 if node is slow else 10.0, True), 2000)
    assert counts[slow.port] < 0.05 * 2000, counts


def test_peak_ewma_treats_fast_failures_as_slow():
    clock = Clock()
    _, pool = make_pool(2, clock=clock)
    good, failing = pool.nodes
    counts = drive(Balancers(["least-response-time"]).get("least-response-time"), pool, clock,
                   lambda node: (1.0, False) if node is failing else (20.0, True), 1000)  # fails in 1 ms
    assert counts[failing.port] < 0.1 * 1000, counts


def test_power_of_two_prefers_less_loaded():
    clock = Clock()
    _, pool = make_pool(2, clock=clock)
    busy, idle = pool.nodes
    for _ in range(10):
        busy.state.on_dispatch(clock.t)
    strategy = Balancers(["power-of-two-choices"]).get("power-of-two-choices")
    assert all(strategy.pick(pool, ctx(seed=s)) is idle for s in range(20))


def test_weighted_least_connections_respects_weight():
    clock = Clock()
    _, pool = make_pool(2, lambda i: {"weight": 1 if i == 0 else 4}, clock=clock)
    strategy = Balancers(["weighted-least-connections"]).get("weighted-least-connections")
    c = ctx()
    for _ in range(50):
        strategy.pick(pool, c).state.on_dispatch(clock.t)
    light, heavy = pool.nodes
    assert heavy.state.in_flight(clock.t) == pytest.approx(4 * light.state.in_flight(clock.t), abs=5)


def test_plugin_registration():
    from maxine import balancers

    class AlwaysLast:
        name = "always-last"

        def pick(self, pool, ctx):
            return pool.nodes[-1]

    balancers.register("always-last", AlwaysLast)
    try:
        _, pool = make_pool(3)
        strategy = Balancers().get("always-last")
        assert strategy.pick(pool, ctx()) is pool.nodes[-1]
    finally:
        balancers._factories.pop("always-last")


def test_round_robin_pick_is_cheap():
    """Not a timing assertion: a behavioural check that RR needs no per-pick allocation of lists."""
    _, pool = make_pool(10)
    strategy = Balancers(["round-robin"]).get("round-robin")
    c = ctx()
    order = [strategy.pick(pool, c).port for _ in range(20)]
    assert order == [1000 + (i % 10) for i in range(20)]
    assert isinstance(pool, Pool)
