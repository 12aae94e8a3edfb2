"""Behaviour of the learned strategies: bounded exploration, trend avoidance,
power-of-two among the best scored, and results in the lab's simulator."""

from __future__ import annotations

import random

from maxine.balancers import Balancers, PickContext
from maxine.balancers.ml_strategies import HEALTH_KEY, AiDriven, HealthScore, Predictive
from maxine.registry import Instance, Pool
from maxine.training import scenario as scenarios
from maxine.training.simulator import simulate


def fleet(n):
    nodes = tuple(Instance("s", "10.0.0.1", 7000 + i, {}, ttl=1e12, now=0.0, dispatch_ttl=1e9) for i in range(n))
    return nodes, Pool("s", nodes)


def drive(strategy, nodes, pool, latency_of, picks=4000, dt=0.01, seed=1, fail_of=lambda i, t: False):
    """Closed loop: each pick is answered after latency_of(i, t) ms (reported at once)."""
    ctx = PickContext(now=0.0, rng=random.Random(seed))
    counts = [0] * len(nodes)
    index = {id(n): i for i, n in enumerate(nodes)}
    pending = []
    for k in range(picks):
        t = k * dt
        ctx.now = t
        while pending and pending[0][0] <= t:
            done, node, lat, ok = pending.pop(0)
            node.state.on_result(lat, ok, done)
            strategy.learn_one(node, lat, ok, done)
        node = strategy.pick(pool, ctx)
        node.state.on_dispatch(t)
        i = index[id(node)]
        counts[i] += 1
        lat = latency_of(i, t)
        pending.append((t + lat / 1000.0, node, lat, not fail_of(i, t)))
        pending.sort(key=lambda p: p[0])
    return counts


def test_registered_and_built_by_balancers():
    b = Balancers(["ai-driven", "predictive", "health-score"])
    assert {type(s) for s in b.strategies.values()} == {AiDriven, Predictive, HealthScore}
    assert len(b.observers) == 3


def test_ai_driven_probes_a_slow_node_but_does_not_feed_it():
    nodes, pool = fleet(4)
    s = AiDriven(probe_s=3.0)
    counts = drive(s, nodes, pool, lambda i, t: 400.0 if i == 3 else 20.0, picks=6000)  # 60 s
    share = counts[3] / sum(counts)
    assert counts[3] >= 60 / 3.0 * 0.5, counts  # not starved: probed about every probe_s
    assert share < 0.05, counts
    assert s.probes > 0


def test_ai_driven_caps_a_node_that_looks_best():
    # node 0 answers in 1 ms, the rest in 30 ms: without the cap it would take almost everything
    nodes, pool = fleet(8)
    s = AiDriven(share_cap=2.0)
    counts = drive(s, nodes, pool, lambda i, t: 1.0 if i == 0 else 30.0, picks=5000, dt=0.002)
    assert counts[0] / sum(counts) <= 2.0 / 8 + 0.03, counts
    assert s.capped > 0
    free = AiDriven(share_cap=100.0)
    nodes2, pool2 = fleet(8)
    counts2 = drive(free, nodes2, pool2, lambda i, t: 1.0 if i == 0 else 30.0, picks=5000, dt=0.002)
    assert counts2[0] / sum(counts2) > counts[0] / sum(counts)


def test_fast_failures_do_not_attract_traffic():
    for strategy in (AiDriven(), Predictive(), HealthScore()):
        nodes, pool = fleet(5)
        counts = drive(strategy, nodes, pool, lambda i, t: 1.0 if i == 0 else 40.0, picks=4000,
                       fail_of=lambda i, t: i == 0)
        assert counts[0] / sum(counts) < 0.2 / 2, (strategy.name, counts)  # well under a fair 1/5


def test_predictive_steers_away_from_a_node_getting_worse():
    nodes, pool = fleet(2)
    p = Predictive()
    ctx = PickContext(now=0.0, rng=random.Random(3))
    # same current latency, but node 0 got there by rising fast, node 1 is flat
    for k in range(200):
        t = k * 0.02
        for i, node in enumerate(nodes):
            lat = (10.0 + 10.0 * t) if i == 0 else 50.0
            node.state.on_result(lat, True, t)
            p.learn_one(node, lat, True, t)
    ctx.now = 4.0
    assert abs(nodes[0].state.peak_ewma(4.0) - nodes[1].state.peak_ewma(4.0)) < 2.0
    assert p.factor(nodes[0].state.extra[p.key]) > 1.2
    assert p.factor(nodes[1].state.extra[p.key]) == 1.0
    assert p.pick(pool, ctx) is nodes[1]


def test_health_score_scales_load_by_score_not_argmax():
    # the score multiplies the Peak-EWMA × (in-flight + 1) cost inside power of two
    # (it used to filter the pool to the best-scored nodes, which herded when scores lagged)
    nodes, pool = fleet(6)
    now = 1.0
    scores = [100, 98, 97, 96, 30, 10]
    for node, sc in zip(nodes, scores):
        node.state.extra[HEALTH_KEY] = (sc, now)  # as the hub's cache writes them
    h = HealthScore()
    ctx = PickContext(now=now, rng=random.Random(0))
    counts = [0] * 6
    for _ in range(2000):
        node = h.pick(pool, ctx)
        node.state.on_dispatch(now)  # nothing completes: load builds up where traffic goes
        counts[nodes.index(node)] += 1
    assert counts[5] < counts[4] < min(counts[:4]) / 2, counts  # load in proportion to the score
    assert counts[5] < 0.05 * 2000 and counts[4] < 0.12 * 2000, counts
    assert all(c > 300 for c in counts[:4]), counts  # the best four share most of the traffic


def test_strategy_failure_falls_back_to_p2c_peak_ewma():
    nodes, pool = fleet(3)
    ctx = PickContext(now=1.0, rng=random.Random(0))
    for s in (AiDriven(), Predictive(), HealthScore()):
        for node in nodes:
            node.state.extra[s.key] = "corrupt"
            node.state.extra[HEALTH_KEY] = ("corrupt", "corrupt")
        assert s.pick(pool, ctx) in nodes
        assert s.fallbacks == 1 and s.last_error
        s.learn_one(nodes[0], 5.0, True, 1.0)  # never raises


def test_lab_slow_server_learned_beat_p2c_peak_ewma():
    sc = scenarios.by_name("slow-server-middle")
    sc["requests"] = 6000
    p2c = simulate(sc, "p2c-peak-ewma", 7)
    for name in ("ai-driven", "predictive"):
        r = simulate(sc, name, 7)
        assert r["p99_ms"] <= p2c["p99_ms"], (name, r["p99_ms"], p2c["p99_ms"])
        assert r["error_rate"] <= p2c["error_rate"] + 0.001
