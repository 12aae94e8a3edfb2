"""Training is bounded: one torch thread by default and a wall-clock budget
that stops the optimisation (and says so in the metadata)."""

from __future__ import annotations

from maxine.training import scenario as scenarios
from maxine.training.telemetry_log import record_runs
from maxine.training.train import train


def test_time_budget_stops_training_and_is_recorded(tmp_path):
    sc = scenarios.by_name("homogeneous")
    sc["requests"] = 1500
    record_runs([sc], ["least-response-time"], [0], str(tmp_path), every=1, progress=False)
    quick = train(str(tmp_path), epochs=50, max_seconds=0.3, progress=False)
    meta = quick["metadata"]["training"]
    assert meta["stopped_early"] is True and meta["threads"] == 1
    assert len(meta["loss"]) < 50
    full = train(str(tmp_path), epochs=2, max_seconds=None, progress=False)
    assert full["metadata"]["training"]["stopped_early"] is False
    assert len(full["metadata"]["training"]["loss"]) == 2
