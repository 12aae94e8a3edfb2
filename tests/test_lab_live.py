"""`maxine bench live` end to end: a real server, real sockets, a small run."""

from __future__ import annotations

import json

from maxine.training.lab_cli import bench_live_main


def test_bench_live_runs_a_small_scenario_end_to_end(tmp_path, capsys):
    out = tmp_path / "live.json"
    code = bench_live_main(["--requests", "40", "--strategies", "round-robin,p2c-peak-ewma", "--seeds", "1001,1002",
                            "--max-seconds", "60", "--json", str(out), "--no-progress"])
    assert code == 0
    rows = json.loads(out.read_text())["results"]
    assert {r["strategy"] for r in rows} == {"round-robin", "p2c-peak-ewma"}
    for r in rows:
        assert r["p50_ms"] > 0 and 0.0 <= r["error_rate"] <= 1.0 and r["goodput"] > 0
    for r in rows:
        assert r["seeds"] == [1001, 1002]  # each strategy ran on both workloads, averaged
    out = capsys.readouterr().out
    assert "== live-small" in out
    won = out.split("seeds won: ")[1].splitlines()[0]
    assert sum(int(part.split()[-1]) for part in won.split(", ")) == 2, won
