"""The scanning strategies' cached picks (ScanBook) against their exact scans.

Two identical fleets get the same random telemetry (dispatches, results, load
reports, time passing); one strategy picks from its pool's book, a twin
evaluates every candidate now. With the same random draws they must pick the
same node at every step."""

from __future__ import annotations

import gc
import random
import weakref
from collections import Counter

import pytest

from maxine.balancers import Balancers, PickContext
from maxine.balancers.ml_strategies import HEALTH_KEY
from maxine.balancers.pickers import ScanBook, first_lowest
from maxine.registry import Pool, Registry
from maxine.telemetry import IDLE_ROUND, RETIRE_EVENTS_PER_NODE


def fleet(n, seed=0):
    registry = Registry()
    rng = random.Random(seed)
    for i in range(n):
        registry.register("svc", "10.0.0.1", 1000 + i, {"weight": rng.choice([1, 2, 3]),
                                                        "cost": rng.choice([1.0, 2.0, None])})
    return Pool("svc", registry.pool("svc").nodes)  # not held by the registry: a test may drop it


# strategy name -> the exact pick of a twin strategy object
EXACT = {
    "least-connections": lambda s, pool, ctx: s.scan(pool, ctx),
    "weighted-least-connections": lambda s, pool, ctx: s.scan(pool, ctx),
    "cost-aware": lambda s, pool, ctx: s.scan(pool, ctx),
    "least-response-time": lambda s, pool, ctx: s.scan(pool, ctx),
    "c3": lambda s, pool, ctx: s.scan(pool, ctx),
    "prequal": lambda s, pool, ctx: s.scan(pool, ctx),
    "health-score": lambda s, pool, ctx: s.scan(pool, ctx),
    "predictive": lambda s, pool, ctx: s.scan(pool, ctx),
}


def drive(name, steps=3000, n=10, seed=0, params=None, report=None, idle_events=0):
    """Pick with the book and with the exact scan on twin fleets; returns the picks.
    ``report(events)`` draws a load report's in-flight (whole numbers by default).
    ``idle_events``: every 250 steps, that many dispatches and results with no pick
    between (other strategies' traffic), then a check that the book retired."""
    report_in_flight = report or (lambda events: events.randrange(6))
    cached, exact = Balancers([name]), Balancers([name])
    sc, se = cached.get(name), exact.get(name)
    pc, pe = fleet(n, seed), fleet(n, seed)
    ctx_c = PickContext(now=0.0, rng=random.Random(seed), params=dict(params or {}))
    ctx_e = PickContext(now=0.0, rng=random.Random(seed), params=dict(params or {}))
    events = random.Random(seed + 1)
    now = 0.0
    first = [events.uniform(5.0, 15.0) for _ in range(n)]
    for pool in (pc, pe):  # every node has latency data: the typical latency of a new node is not compared
        for node, latency in zip(pool.nodes, first):
            node.state.on_result(latency, True, now)
    picks = []
    for step in range(steps):
        now += events.expovariate(200.0) if events.random() < 0.98 else events.choice([2.0, 40.0, 100.0])
        ctx_c.now = ctx_e.now = now
        a, b = sc.pick(pc, ctx_c), EXACT[name](se, pe, ctx_e)
        assert a.port == b.port, f"{name} step {step}: book picked {a.port}, exact scan {b.port}"
        picks.append(a.port)
        i = a.port - 1000
        if events.random() < 0.95:  # else the pick is discarded, as discover does when the lease just passed
            pc.nodes[i].state.on_dispatch(now)
            pe.nodes[i].state.on_dispatch(now)
        r = events.random()
        k = events.randrange(n)
        if r < 0.5:  # a result
            latency, ok = events.lognormvariate(2.0, 0.7), events.random() > 0.05
            for pool, balancers in ((pc, cached), (pe, exact)):
                pool.nodes[k].state.on_result(latency, ok, now)
                balancers.learn_one(pool.nodes[k], latency, ok, now)
        elif r < 0.6:  # a load report
            report = dict(in_flight=report_in_flight(events), cpu=events.random(), qps=events.uniform(1, 50),
                          latency_ms=events.choice([None, events.uniform(1, 30)]))
            for pool in (pc, pe):
                pool.nodes[k].state.on_load_report(now, **report)
        elif r < 0.62:  # a hub health score (read without a notification)
            score = (events.uniform(10, 100), now)
            for pool in (pc, pe):
                pool.nodes[k].state.extra[HEALTH_KEY] = score
            now += 0.06  # the books re-read hub values within HUB_REFRESH_S
        elif r < 0.7:  # a dispatch by another strategy, not through this pick
            for pool in (pc, pe):
                pool.nodes[k].state.on_dispatch(now)
        if idle_events and step % 250 == 249:
            for _ in range(idle_events):
                now += 0.001
                k = events.randrange(n)
                latency = events.lognormvariate(2.0, 0.7) if events.random() < 0.5 else None
                for pool in (pc, pe):
                    pool.nodes[k].state.on_dispatch(now)
                    if latency is not None:
                        pool.nodes[k].state.on_result(latency, True, now)
            assert not any(type(w()) is ScanBook for w in pc.nodes[0].state.watchers), "an idle book kept watching"
    return picks


@pytest.mark.parametrize("name", sorted(EXACT))
def test_cached_picks_equal_the_exact_scan(name):
    picks = drive(name)
    assert len(set(picks)) >= 3  # the run spreads load: the comparison covered many different picks


@pytest.mark.parametrize("name", ["least-connections", "least-response-time", "predictive"])
def test_a_book_idle_for_long_retires_and_its_successor_picks_the_same(name):
    """Traffic the book's strategy did not pick (other strategies' dispatches and reports)
    past RETIRE_EVENTS_PER_NODE per node (and a round): the book stops watching, and the next pick
    builds a new one that still picks what the exact scan picks."""
    picks = drive(name, steps=1000, idle_events=RETIRE_EVENTS_PER_NODE * 10 + 2 * IDLE_ROUND)
    assert len(set(picks)) >= 3


def test_a_book_in_use_does_not_retire():
    pool = fleet(3)
    s = Balancers(["least-connections"]).get("least-connections")
    ctx = PickContext(now=0.0, rng=random.Random(0))
    book = None
    for step in range(RETIRE_EVENTS_PER_NODE * 3 * 4):
        node = s.pick(pool, ctx)
        node.state.on_dispatch(ctx.now)
        node.state.on_result(5.0, True, ctx.now)
        book = book or pool.cache[s._key]
    assert pool.cache[s._key] is book and not book.retired


def test_c3_book_per_clients_parameter():
    drive("c3", steps=1000, params={"clients": 3})


@pytest.mark.parametrize("name", ["least-connections", "least-response-time", "prequal", "predictive"])
def test_fractional_reported_in_flight(name):
    # a dispatch may not add exactly 1.0 to a fractional in-flight: such entries are recomputed
    drive(name, steps=1500, report=lambda events: events.choice([0.1, 0.3, 2.7, 1e-9, 3]))


def reservoir(values, rand):
    """FullScan's former loop: the lowest so far, replaced by an equal one with probability 1/ties."""
    best, ties = 0, 1
    for i in range(1, len(values)):
        if values[i] < values[best]:
            best, ties = i, 1
        elif values[i] == values[best]:
            ties += 1
            if rand() * ties < 1.0:
                best = i
    return best


def test_first_lowest_is_reservoir_sampling_with_the_same_draws():
    values_rng = random.Random(5)
    a, b = random.Random(6), random.Random(6)
    for _ in range(5000):
        values = [values_rng.randrange(4) for _ in range(values_rng.randrange(1, 12))]
        assert first_lowest(values, a.random) == reservoir(values, b.random), values
        assert a.random() == b.random()  # as many draws


@pytest.mark.parametrize("name", ["least-connections", "least-response-time", "c3", "prequal"])
def test_ties_are_broken_at_random(name):
    pool = fleet(4)
    s = Balancers([name]).get(name)
    for node in pool.nodes:
        node.state.on_load_report(0.0, in_flight=0, latency_ms=10.0)
    ctx = PickContext(now=0.0, rng=random.Random(3))
    counts = Counter(s.pick(pool, ctx).port for _ in range(400))  # no dispatch: the four stay equal
    assert len(counts) == 4 and min(counts.values()) > 60


def test_a_result_a_report_and_a_dispatch_change_the_choice():
    pool = fleet(3)
    s = Balancers(["least-response-time"]).get("least-response-time")
    a, b, c = (node.state for node in pool.nodes)
    for state, latency in ((a, 10.0), (b, 20.0), (c, 30.0)):
        state.on_result(latency, True, 0.0)
    ctx = PickContext(now=0.0, rng=random.Random(0))
    assert s.pick(pool, ctx) is pool.nodes[0]
    a.on_result(100.0, True, 0.0)  # a result: node 0 is now the slowest
    assert s.pick(pool, ctx) is pool.nodes[1]
    b.on_load_report(0.0, in_flight=5)  # a report: node 1 is busy
    assert s.pick(pool, ctx) is pool.nodes[2]
    for _ in range(4):  # dispatches: 30 ms × 5 requests > node 1's 20 ms × 6 > node 0's 100 ms × 1
        c.on_dispatch(0.0)
    assert s.pick(pool, ctx) is pool.nodes[0]


def test_a_report_going_stale_and_forgotten_dispatches_reach_the_book():
    pool = fleet(2)
    s = Balancers(["least-connections"]).get("least-connections")
    a, b = (node.state for node in pool.nodes)
    a.on_load_report(0.0, in_flight=9)
    for _ in range(3):
        b.on_dispatch(0.0)
    ctx = PickContext(now=1.0, rng=random.Random(0))
    assert s.pick(pool, ctx) is pool.nodes[1]  # 3 outstanding < 9 reported
    ctx.now = 91.0  # the report is stale: node 0 counts its own outstanding dispatches (none)
    assert s.pick(pool, ctx) is pool.nodes[0]
    a.on_load_report(91.0, in_flight=0)
    for _ in range(5):
        a.on_dispatch(91.0)
    ctx.now = 92.0
    assert s.pick(pool, ctx) is pool.nodes[1]  # 5 in flight at node 0 (report + dispatches) > 3
    ctx.now = 92.0 + 181.0  # node 0's report stale, node 1's dispatches forgotten (30 s ring), node 0's too
    assert s.pick(pool, ctx).state.in_flight(ctx.now) == 0.0


def test_several_books_watch_one_node():
    pool = fleet(3)
    strategies = Balancers(["least-connections", "c3"])
    ctx = PickContext(now=0.0, rng=random.Random(0))
    for name in ("least-connections", "c3"):
        strategies.get(name).pick(pool, ctx)
    state = pool.nodes[0].state
    assert len(state.watchers) == 2
    state.on_load_report(0.0, in_flight=50)
    for name in ("least-connections", "c3"):
        assert strategies.get(name).pick(pool, ctx) is not pool.nodes[0]


def test_any_cache_with_add_can_watch_a_node():
    pool = fleet(2)
    s = Balancers(["least-connections"]).get("least-connections")
    s.pick(pool, PickContext(now=0.0, rng=random.Random(0)))

    class Cache:
        def __init__(self):
            self.seen = []

        def add(self, state):
            self.seen.append(state)

    cache = Cache()
    state = pool.nodes[0].state
    state.add_watcher(cache)
    state.on_load_report(1.0, in_flight=1)
    assert cache.seen == [state] and len(state.watchers) == 2


def test_a_dropped_pool_frees_its_books_without_the_cycle_collector():
    names = ["least-connections", "least-response-time", "c3", "prequal", "health-score", "predictive"]
    strategies = Balancers(names)
    pool = fleet(4)
    nodes = pool.nodes
    ctx = PickContext(now=1.0, rng=random.Random(0))
    for name in names:
        strategies.get(name).pick(pool, ctx)
    books = [weakref.ref(v) for v in pool.cache.values() if hasattr(v, "settle")]
    assert len(books) == len(names)
    gc.disable()  # what gc.freeze() does to long-lived objects: a cycle would never be freed
    try:
        del pool
        assert all(book() is None for book in books)
    finally:
        gc.enable()
    nodes[0].state.on_load_report(2.0, in_flight=1)  # dead watchers are ignored
    nodes[0].state.on_result(3.0, True, 2.0)
