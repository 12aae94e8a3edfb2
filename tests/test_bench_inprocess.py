"""``python -m maxine.bench.inprocess``: the instruction-count workload runs for a
strategy and for the reference, and refuses bad arguments."""

from maxine.bench import inprocess


def test_runs_discoveries_through_the_app(capsys):
    assert inprocess.main(["advanced-ml", "2000"]) == 0
    assert inprocess.main(["reference", "10"]) == 0
    assert inprocess.main(["round-robin"]) == 2
    assert "usage" in capsys.readouterr().err
