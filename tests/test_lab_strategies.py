"""The strong classical strategies as production objects, and the bench CLI."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from maxine.balancers import Balancers, PickContext, factories
from maxine.balancers.adaptive import ADAPTIVE
from maxine.registry import Instance, Pool
from maxine.training import scenario as scenarios
from maxine.training.lab_cli import bench_lb_main


def make_pool(n):
    nodes = tuple(Instance("svc", "10.0.0.1", 9000 + i, {}, ttl=30.0, now=0.0) for i in range(n))
    return Pool("svc", nodes), nodes


def ctx(now, seed=1):
    return PickContext(now=now, rng=random.Random(seed))


def test_adaptive_strategies_are_registered_for_discover():
    names = factories()
    for name in ADAPTIVE:
        assert name in names
        strategy = Balancers([name]).get(name)
        pool, _ = make_pool(3)
        assert strategy.pick(pool, ctx(0.0)) in pool.nodes


def test_prequal_never_picks_a_hot_replica_while_a_cold_one_exists():
    strategy = Balancers(["prequal"]).get("prequal")
    pool, nodes = make_pool(10)
    for i, node in enumerate(nodes):
        # node 9 is the fastest but has by far the most requests in flight
        node.state.on_load_report(0.0, in_flight=50 if i == 9 else i % 3, cpu=0.5, qps=10.0,
                                  error_rate=0.0, latency_ms=1.0 if i == 9 else 20.0 + i)
    picks = Counter(strategy.pick(pool, ctx(0.1, s)) for s in range(200))
    assert nodes[9] not in picks
    # among cold replicas the lowest latency at the current load wins
    assert picks.most_common(1)[0][0] is nodes[0]


def test_orca_wrr_shares_follow_reported_capacity_after_blackout():
    strategy = Balancers(["orca-wrr"]).get("orca-wrr")
    pool, nodes = make_pool(3)
    # capacity = qps / utilisation: 10, 20, 40
    reports = [(5.0, 0.5), (10.0, 0.5), (20.0, 0.5)]

    def report(t):
        for node, (qps, cpu) in zip(nodes, reports):
            node.state.on_load_report(t, in_flight=1, cpu=cpu, qps=qps, error_rate=0.0)

    report(0.0)
    early = Counter(strategy.pick(pool, ctx(1.0)) for _ in range(700))
    # within the blackout period every node gets the mean weight
    assert max(early.values()) - min(early.values()) < 40
    for t in range(1, 15):
        report(float(t))
        strategy.pick(pool, ctx(float(t)))
    late = Counter(strategy.pick(pool, ctx(15.0)) for _ in range(700))
    assert late[nodes[2]] == pytest.approx(400, abs=10)
    assert late[nodes[1]] == pytest.approx(200, abs=10)
    assert late[nodes[0]] == pytest.approx(100, abs=10)


def test_c3_prefers_the_replica_with_the_shorter_queue_and_learns_from_reports():
    balancers = Balancers(["c3"])
    strategy = balancers.get("c3")
    pool, (a, b) = make_pool(2)
    for node, queue in ((a, 8), (b, 1)):
        node.state.on_load_report(0.0, in_flight=queue, latency_ms=10.0)
    assert strategy.pick(pool, ctx(0.5)) is b
    # b becomes slow and its calls fail: C3 moves to a
    for _ in range(20):
        b.state.on_result(400.0, False, 1.0)
        balancers.learn_one(b, 400.0, False, 1.0)
    assert strategy.pick(pool, ctx(1.0)) is a


def test_least_request_weights_follow_instance_weight():
    strategy = Balancers(["least-request"]).get("least-request")
    nodes = (Instance("svc", "h", 1, {"weight": 4}, 30.0, 0.0), Instance("svc", "h", 2, {"weight": 1}, 30.0, 0.0))
    pool = Pool("svc", nodes)
    for _ in range(3):
        nodes[0].state.on_dispatch(0.0)  # 3 in flight, weight 4 -> (3+1)/4 = 1 < (0+1)/1
    assert strategy.pick(pool, ctx(0.0)) is nodes[0]


def test_tuning_and_evaluation_seeds_are_separate():
    assert len(scenarios.TUNING_SEEDS) >= 100
    assert not set(scenarios.TUNING_SEEDS) & set(scenarios.EVALUATION_SEEDS)
    for sc in scenarios.builtin():
        assert not set(sc["seeds"]) & set(scenarios.TUNING_SEEDS), sc["name"]


def test_builtin_scenarios_cover_the_issue():
    names = {sc["name"] for sc in scenarios.builtin()}
    for wanted in ("homogeneous", "speed-spread-10x", "slow-server-middle", "rotating-slow", "bursty-mmpp",
                   "overload-0.9", "overload-1.0", "overload-1.1", "fast-failure"):
        assert wanted in names


@pytest.mark.parametrize("bad", [
    {"servers": []},
    {"service_time": {"dist": "weibull", "mean_ms": 5}},
    {"arrivals": {"kind": "mmpp", "utilization": 0.5}},
    {"events": [{"start": 0.5, "end": 0.2, "servers": [0], "speed": 0.5}]},
    {"events": [{"start": 0.1, "end": 0.2, "servers": [99], "speed": 0.5}]},
    {"info": {"model": "telepathy"}},
])
def test_bad_scenarios_are_rejected(bad):
    with pytest.raises(scenarios.ScenarioError):
        scenarios.load({"name": "bad", **bad})


def test_bench_lb_writes_the_json_schema(tmp_path, capsys):
    sc = tmp_path / "tiny.json"
    sc.write_text(json.dumps({"name": "tiny", "requests": 800, "seeds": [7, 8],
                              "servers": [{"count": 3, "speed": 1.0}, {"count": 1, "speed": 0.2}]}))
    out = tmp_path / "out.json"
    code = bench_lb_main(["--scenario", str(sc), "--strategies", "round-robin,least-request,oracle",
                          "--json", str(out), "--processes", "1", "--no-progress"])
    assert code == 0
    doc = json.loads(out.read_text())
    rows = doc["results"]
    assert {r["strategy"] for r in rows} == {"round-robin", "least-request", "oracle"}
    for r in rows:
        assert r["scenario"] == "tiny" and r["seeds"] == [7, 8]
        for key in ("p50_ms", "p99_ms", "p999_ms", "error_rate", "goodput", "imbalance", "decision_us"):
            assert isinstance(r[key], float)
    table = capsys.readouterr().out
    assert "== tiny" in table and "†oracle" in table and "*" in table


def test_bench_lb_rejects_unknown_strategy(capsys):
    assert bench_lb_main(["--scenario", "homogeneous", "--strategies", "nope", "--no-progress"]) == 2
