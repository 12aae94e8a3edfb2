"""`maxine bench lb --record DIR`: the simulator writes the telemetry-log
format (every node of the pool at each logged decision, one chosen, the true
delay as target) and `maxine train` reads it."""

from __future__ import annotations

import numpy as np

from maxine.training.lab_cli import bench_lb_main
from maxine.training.models_cli import train_main
from maxine.training.telemetry_log import read_log


def test_bench_lb_record_writes_the_training_format(tmp_path, capsys):
    log = tmp_path / "rec"
    rc = bench_lb_main(["--scenario", "slow-server-middle", "--strategies", "least-response-time,oracle",
                        "--seeds", "0", "--requests", "2000", "--record", str(log), "--record-every", "2",
                        "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "recorded 20000 rows" in out and "least-response-time" in out  # 2 runs × 1000 decisions × 10 nodes
    cols = read_log(str(log))
    n = len(cols["now"])
    assert n == 20000
    assert np.all(np.isfinite(cols["true_delay_ms"])) and np.all(cols["true_delay_ms"] > 0)
    # exactly one chosen node per logged decision of each run
    runs = np.concatenate([[0], np.cumsum(np.diff(cols["now"]) < 0)])
    key = runs * 10_000_000 + cols["decision"]
    _, counts = np.unique(key[cols["chosen"] == 1], return_counts=True)
    assert np.all(counts == 1) and len(counts) == 2000
    assert train_main(["advanced-ml", "--data", str(log), "--epochs", "1", "--out", str(tmp_path / "m"),
                       "--version", "r1", "--no-progress"]) == 0


def test_record_warns_on_evaluation_seeds(tmp_path, capsys):
    assert bench_lb_main(["--scenario", "homogeneous", "--strategies", "round-robin", "--seeds", "1001",
                          "--requests", "200", "--record", str(tmp_path / "r"), "--no-progress"]) == 0
    assert "warning: recording evaluation seeds [1001]" in capsys.readouterr().err


def test_a_log_written_before_scale_ms_still_trains(tmp_path):
    """Logs recorded before ``scale_ms`` joined the raw columns lack it: read as NaN,
    the scale-free rows fall back to Peak-EWMA, and training runs."""
    log = tmp_path / "rec"
    assert bench_lb_main(["--scenario", "slow-server-middle", "--strategies", "least-response-time",
                          "--seeds", "0", "--requests", "1500", "--record", str(log), "--no-progress"]) == 0
    (path,) = log.glob("telemetry-*.npz")
    with np.load(path) as z:
        old = {k: z[k] for k in z.files if k != "scale_ms"}
    assert np.isfinite(dict(np.load(path))["scale_ms"]).any()  # the new writer does record it
    path.unlink()
    np.savez_compressed(path, **old)
    cols = read_log(str(log))
    assert len(cols["now"]) == 15000 and np.all(np.isnan(cols["scale_ms"]))
    assert train_main(["advanced-ml", "--data", str(log), "--epochs", "1", "--out", str(tmp_path / "m"),
                       "--version", "r1", "--no-progress"]) == 0
