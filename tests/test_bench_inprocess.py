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
