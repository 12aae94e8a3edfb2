"""``python -m maxine.bench.inprocess`` and ``maxine.bench.ring``: the instruction-count workloads run
through the app without errors, and bad arguments are refused."""

from maxine.bench import inprocess


def test_runs_discoveries_through_the_app(capsys):
    assert inprocess.main(["advanced-ml", "2000"]) == 0
    assert inprocess.main(["reference", "10"]) == 0
    assert inprocess.main(["round-robin"]) == 2
    assert "usage" in capsys.readouterr().err


def test_runs_the_post_workloads_through_the_app():
    for workload in ("heartbeat", "record-response-time", "record-response-times", "reference-post"):
        assert inprocess.main([workload, "300"]) == 0, workload


def test_a_failing_workload_is_reported(capsys):
    assert inprocess.main(["no-such-strategy", "10"]) == 1  # every discovery is a 400
    assert "10 of 10 requests failed" in capsys.readouterr().err
    assert inprocess.main(["no-such-strategy", "10", "rsgi"]) == 1
    assert "10 of 10 requests failed" in capsys.readouterr().err


def test_runs_every_workload_through_granians_interface(capsys):
    for workload in ("round-robin", "advanced-ml", "reference", "heartbeat", "record-response-time",
                     "record-response-times", "reference-post"):
        assert inprocess.main([workload, "300", "rsgi"]) == 0, workload
    assert inprocess.main(["round-robin", "10", "http2"]) == 2
    assert "usage" in capsys.readouterr().err


def test_the_server_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MAXINE_STRATEGIES", "round-robin,c3")
    assert inprocess.main(["c3", "50"]) == 0
    assert inprocess.main(["advanced-ml", "50"]) == 1  # not offered: every discovery is a 400


def test_the_ring_workload_and_its_timed_twin(capsys):
    from maxine.bench import ring
    from maxine.bench.scale import hashing_pick_cost

    assert ring.main(["50", "200"]) == 0
    assert ring.main(["50"]) == 2 and "usage" in capsys.readouterr().err
    registry, strategy, ctx = ring.hashed_service(20)
    ring.pick_each(registry, strategy, ctx, ["a"])
    assert len(registry.pool("big").cache) == 1  # the ring, built by the first pick
    rows = hashing_pick_cost(sizes=(10, 200), picks=500)
    assert [r["instances"] for r in rows] == [10, 200]
    assert all(r[k] > 0 for r in rows for k in ("pick_us", "ring_build_ms", "after_leave_ms", "after_join_ms"))


def test_picks_times_every_strategy_asked_for(capsys, tmp_path):
    import json

    from maxine.bench import picks

    out = tmp_path / "picks.json"
    assert picks.main(["--requests", "300", "--rounds", "2", "--reported",
                       "--strategies", "round-robin,ai-driven,reference", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| ai-driven |" in printed and "| round-robin |" in printed and "| reference |" in printed
    saved = json.loads(out.read_text())
    assert saved["reported"] is True
    assert all(len(v) == 2 and all(t > 0 for t in v) for v in saved["us_per_discovery"].values())


def test_picks_refuses_a_strategy_the_server_does_not_offer(capsys, monkeypatch):
    import pytest

    from maxine.bench import picks

    monkeypatch.setenv("MAXINE_STRATEGIES", "round-robin")
    with pytest.raises(SystemExit):
        picks.main(["--strategies", "c3", "--requests", "10", "--rounds", "1"])
    assert "not offered: c3" in capsys.readouterr().err


def test_reports_reach_the_learned_strategies():
    import asyncio

    from maxine.bench import picks
    from maxine.bench.inprocess import FakeClock, population

    async def reported():
        maxine, app, node_ids = population(FakeClock())
        maxine.balancers.defer = asyncio.get_running_loop().call_soon
        picks.report_on_every_node(maxine, node_ids)
        await asyncio.sleep(0)
        return maxine, node_ids
    maxine, node_ids = asyncio.run(reported())
    states = [inst.state for inst in maxine.registry.nodes.values()]
    assert len(states) == len(node_ids) == 100
    assert all(s.ewma_ms == 12.5 and s.reported_in_flight == 1.0 for s in states)
