"""``maxine bench client`` runs both ways against a real server and writes its figures."""

import json

from maxine.bench.client import bench_client_main


def test_bench_client_measures_both_ways(tmp_path, capsys):
    out = tmp_path / "client.json"
    assert bench_client_main(["--calls", "20", "--concurrency", "20", "--rounds", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    for kind in ("sequential_ms_per_call", "concurrent_pairs_per_s"):
        assert set(figures[kind]) == {"awaited", "queued"}
        assert all(len(v) == 1 and v[0] > 0 for v in figures[kind].values())
    assert "| AsyncMaxineClient, 20 at once: pairs/s |" in capsys.readouterr().out


def test_bad_arguments_are_refused(capsys):
    assert bench_client_main(["--rounds", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
