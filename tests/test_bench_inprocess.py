"""``python -m maxine.bench.inprocess``: the instruction-count workloads run
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


def test_the_server_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MAXINE_STRATEGIES", "round-robin,c3")
    assert inprocess.main(["c3", "50"]) == 0
    assert inprocess.main(["advanced-ml", "50"]) == 1  # not offered: every discovery is a 400
