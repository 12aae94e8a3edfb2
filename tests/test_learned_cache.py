"""advanced-ml's inference cache: a pick runs the model only for never-scored
nodes and at most ``inline_max`` nodes with a new load report; everything
else out of date is re-scored by learn_one or refresh_pending (the server's
background job). Fast failures are penalised, slow ones only through latency."""

from __future__ import annotations

import random

from maxine.balancers import PickContext
from maxine.balancers.learned import CACHE_KEY, FERR_KEY, AdvancedML
from maxine.registry import Pool

from test_learned_strategy import fleet, make_store


def scored(tmp_path, n=100, **kw):
    s = AdvancedML(store=make_store(tmp_path), **kw)
    nodes = fleet(n)
    for node in nodes:
        node.state.on_load_report(0.0, in_flight=1, cpu=0.5, qps=10.0, error_rate=0.0, latency_ms=40.0)
    for node in nodes:  # score everything once (what learn_one / the background job do)
        s._pending[id(node)] = node
    s.refresh_pending(0.0, limit=1000)
    return s, nodes


def test_pick_rescores_at_most_inline_max_nodes(tmp_path):
    s, nodes = scored(tmp_path, inline_max=2)
    assert all(CACHE_KEY in n.state.extra for n in nodes)
    for node in nodes:  # a new load report everywhere
        node.state.on_load_report(1.0, in_flight=3, cpu=0.6, qps=10.0, error_rate=0.0, latency_ms=40.0)
    pool = Pool("svc", tuple(nodes))
    ctx = PickContext(now=1.01, rng=random.Random(0))
    before = s.refreshes
    s.pick(pool, ctx)
    assert s.refreshes - before <= 2          # inline re-scores, d = 8 candidates drawn
    assert 0 < len(s._pending) <= 8           # the others wait, marked
    node = nodes[0]
    s.learn_one(node, 20.0, True, 1.02)       # a client report drains them off the pick path
    assert not s._pending
    s0 = AdvancedML(store=s.store, inline_max=0)
    s0._pending.update({id(n): n for n in nodes})
    s0.refresh_pending(1.0, limit=1000)
    for n in nodes:
        n.state.on_load_report(2.0, in_flight=5, cpu=0.6, qps=10.0, error_rate=0.0, latency_ms=40.0)
    before = s0.refreshes
    for k in range(50):
        s0.pick(pool, PickContext(now=2.01 + k * 0.001, rng=random.Random(k)))
    assert s0.refreshes == before             # inline_max=0: no model call inside pick at all
    assert s0.refresh_pending(2.1, limit=1000) > 0


def test_fast_failures_are_penalised_slow_failures_are_not(tmp_path):
    s, nodes = scored(tmp_path, n=3)
    fast, slow, ok = nodes
    pred = fast.state.extra[CACHE_KEY][3]
    for k in range(5):
        now = 1.0 + k * 0.01
        fast.state.on_result(1.0, False, now)
        s.learn_one(fast, 1.0, False, now)            # an error after 1 ms
        slow.state.on_result(pred * 3, False, now)
        s.learn_one(slow, pred * 3, False, now)       # a timeout: slower than predicted
    assert fast.state.extra[FERR_KEY] > 0.3
    assert slow.state.extra.get(FERR_KEY, 0.0) == 0.0
    assert fast.state.error_ewma > 0.3 and slow.state.error_ewma > 0.3  # NodeState counts both


def test_a_load_report_reaches_the_next_pick_without_a_sweep(tmp_path):
    # refresh_s is long: between sweeps the pool's costs change only through the nodes' telemetry
    s, nodes = scored(tmp_path, n=4, refresh_s=60.0)
    pool = Pool("svc", tuple(nodes))
    ctx = PickContext(now=1.0, rng=random.Random(0))
    picked = [s.pick(pool, ctx) for _ in range(40)]
    assert {n.node_id for n in picked} == {n.node_id for n in nodes}  # equals share the load
    busy = nodes[0]
    busy.state.on_load_report(1.5, in_flight=200, cpu=1.0, qps=10.0, error_rate=0.0, latency_ms=40.0)
    ctx.now = 1.5
    picked = [s.pick(pool, ctx) for _ in range(30)]
    assert busy not in picked
    assert s.fallbacks == 0


def test_a_dropped_pool_frees_its_cost_book_without_the_cycle_collector(tmp_path):
    import gc
    import weakref

    s, nodes = scored(tmp_path, n=4)
    pool = Pool("svc", tuple(nodes))
    s.pick(pool, PickContext(now=1.0, rng=random.Random(0)))
    book = weakref.ref(pool.cache[s._key])
    gc.disable()  # what gc.freeze() does to long-lived objects: a cycle would never be freed
    try:
        del pool
        assert book() is None  # nodes outlive their pool (rebuilt on every change); the book must not
    finally:
        gc.enable()
    nodes[0].state.on_load_report(2.0, in_flight=1, cpu=0.5, qps=10.0)  # a dead watch is ignored


def test_reports_on_nodes_no_book_watches_are_not_scored_until_a_book_reads_them(tmp_path):
    """The cached score is read only by cost books: with none watching a node, a report
    costs no forward pass, and the next book scores the node afresh before its first pick."""
    s, nodes = scored(tmp_path, n=3)
    node = nodes[0]
    before = s.refreshes
    for k in range(5):
        node.state.on_result(30.0 + k, True, 1.0 + k * 0.01)
        s.learn_one(node, 30.0 + k, True, 1.0 + k * 0.01)
        s.note_one(node, 30.0 + k, True, 1.0 + k * 0.01)
    s.settle(1.1)
    assert s.refreshes == before and not s._pending
    assert node.state.extra[CACHE_KEY][0] != node.state.results  # stale: nobody re-scored it
    pool = Pool("svc", tuple(nodes))
    s.pick(pool, PickContext(now=1.2, rng=random.Random(0)))
    c = node.state.extra[CACHE_KEY]
    assert c[0] == node.state.results and c[2] == 1.2 and s.refreshes == before + 1  # only the stale one
    s.learn_one(node, 50.0, True, 1.3)  # watched now: scored on its report
    assert node.state.extra[CACHE_KEY][2] == 1.3


def test_an_idle_cost_book_retires_and_the_next_pick_builds_a_fresh_one(tmp_path):
    from maxine.balancers.learned import CostBook
    from maxine.telemetry import IDLE_ROUND, RETIRE_EVENTS_PER_NODE

    s, nodes = scored(tmp_path, n=4)
    pool = Pool("svc", tuple(nodes))
    ctx = PickContext(now=1.0, rng=random.Random(0))
    s.pick(pool, ctx)
    book = pool.cache[s._key]
    for k in range(RETIRE_EVENTS_PER_NODE * 4 * 3):  # reports, with a pick now and then: the book stays
        node = nodes[k % 4]
        node.state.on_result(40.0, True, 1.0 + k * 1e-5)
        s.learn_one(node, 40.0, True, 1.0 + k * 1e-5)
        if k % 64 == 0:
            s.pick(pool, ctx)
    assert not book.retired and pool.cache[s._key] is book
    for k in range(RETIRE_EVENTS_PER_NODE * 4 + 2 * IDLE_ROUND):  # no pick reads it: it retires
        node = nodes[k % 4]
        node.state.on_result(40.0, True, 1.1 + k * 1e-4)
        s.learn_one(node, 40.0, True, 1.1 + k * 1e-4)
    assert book.retired and not any(n.state.watched_by(CostBook) for n in nodes)
    before = s.refreshes
    nodes[1].state.on_result(45.0, True, 1.2)
    s.learn_one(nodes[1], 45.0, True, 1.2)
    assert s.refreshes == before
    ctx.now = 1.25
    s.pick(pool, ctx)
    assert pool.cache[s._key] is not book and all(n.state.watched_by(CostBook) for n in nodes)
    assert all(n.state.extra[CACHE_KEY][0] == n.state.results for n in nodes)
