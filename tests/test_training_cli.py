"""maxine train / maxine models: a small end-to-end run, and clear errors
(exit 2, one line, no traceback) for missing, empty and malformed logs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from maxine.models import artifacts
from maxine.training.models_cli import models_main, train_main


def cli(*args, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "maxine.training.models_cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_train_from_sim_writes_a_valid_artifact_and_models_cli_manages_it(tmp_path, capsys):
    data, out = tmp_path / "log", tmp_path / "models"
    rc = train_main(["advanced-ml", "--data", str(data), "--from-sim", "speed-spread-10x", "--sim-seeds", "3",
                     "--sim-behaviours", "least-response-time", "--sim-requests", "3000", "--sim-every", "1",
                     "--epochs", "30", "--out", str(out), "--version", "t1", "--no-progress"])
    assert rc == 0
    loaded = artifacts.load_artifact(out / "advanced-ml" / "t1")
    meta = loaded.metadata
    assert meta["data"]["rows"] > 10000 and meta["features"] and meta["git_commit"] is not None
    assert {"numpy", "torch", "python"} <= set(meta["libraries"])
    assert (out / "advanced-ml" / "t1" / "model.pt").exists()
    # the model learned something: better than predicting the mean on the held-out time slice
    assert meta["metrics"]["test_rmse_log"] < 0.8 * meta["metrics"]["baseline_rmse_log"]
    # three nets from seeds 0-2, served as one net that outputs their mean
    assert meta["training"]["members"] == 3 and meta["training"]["seeds"] == [0, 1, 2]
    assert meta["architecture"]["layers"] == [len(meta["features"]), 192, 192, 1]
    assert sum(f.stat().st_size for f in (out / "advanced-ml" / "t1").iterdir()) < 1_000_000
    capsys.readouterr()
    assert models_main(["--root", str(out), "list"]) == 0
    assert "t1" in capsys.readouterr().out
    assert models_main(["--root", str(out), "promote", "advanced-ml", "t1"]) == 0
    assert artifacts.promoted(out, "advanced-ml") == "t1"
    capsys.readouterr()
    assert models_main(["--root", str(out), "show", "advanced-ml"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "t1" and shown["promoted"] is True
    assert models_main(["--root", str(out), "eval", "advanced-ml", "t1", "--data", str(data)]) == 0
    replay = json.loads(capsys.readouterr().out)["replay"]
    assert replay["test_rows"] > 10000 and replay["test_pick_agreement"] > 0.3


def test_clear_errors_without_traceback(tmp_path):
    r = cli("train", "advanced-ml", "--data", str(tmp_path / "missing"), "--out", str(tmp_path))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("train", "advanced-ml", "--data", str(tmp_path / "empty"), "--out", str(tmp_path))
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "telemetry-1-1-00000.npz").write_bytes(b"garbage")
    r = cli("train", "advanced-ml", "--data", str(tmp_path / "bad"), "--out", str(tmp_path))
    assert r.returncode == 2 and "malformed" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "cols").mkdir()
    np.savez(tmp_path / "cols" / "telemetry-1-1-00000.npz", __meta__=np.array('{"log_version": 1}'), now=np.zeros(3))
    r = cli("train", "advanced-ml", "--data", str(tmp_path / "cols"), "--out", str(tmp_path))
    assert r.returncode == 2 and "missing columns" in r.stderr and "Traceback" not in r.stderr
    r = cli("models", "--root", str(tmp_path), "promote", "advanced-ml", "nope")
    assert r.returncode == 2 and "refused" in r.stderr and "Traceback" not in r.stderr
    r = cli("train", "advanced-ml", "--data", str(tmp_path / "cols"), "--members", "0", "--out", str(tmp_path))
    assert r.returncode == 2 and "--members" in r.stderr and "Traceback" not in r.stderr
    r = cli("train", "anomaly", "--data", str(tmp_path / "cols"), "--members", "3", "--out", str(tmp_path))
    assert r.returncode == 2 and "advanced-ml only" in r.stderr and "Traceback" not in r.stderr


def test_time_scales_record_each_scenario_slower_at_the_same_load(tmp_path):
    from maxine.training import scenario as scenarios
    from maxine.training.models_cli import time_scaled

    base = scenarios.by_name("speed-spread-10x")
    one, three = time_scaled([base], [1.0, 3.0])
    assert one is base and three["name"] == "speed-spread-10x@x3"
    assert three["service_time"]["mean_ms"] == 3 * base["service_time"]["mean_ms"]
    assert three["timeout_ms"] == 3 * base["timeout_ms"]  # deadlines keep their meaning at any speed
    assert three["network_ms"]["base"] == 3 * base["network_ms"]["base"]
    assert three["arrivals"] == base["arrivals"] and three["info"] == base["info"]  # same load, same heartbeats
    assert base["service_time"]["mean_ms"] == scenarios.by_name("speed-spread-10x")["service_time"]["mean_ms"]
    r = cli("train", "advanced-ml", "--data", str(tmp_path / "log"), "--from-sim", "homogeneous",
            "--sim-time-scales", "0", "--out", str(tmp_path))
    assert r.returncode == 2 and "--sim-time-scales" in r.stderr and "Traceback" not in r.stderr
    r = cli("train", "advanced-ml", "--data", str(tmp_path / "log"), "--from-sim", "homogeneous",
            "--sim-time-scales", "fast", "--out", str(tmp_path))
    assert r.returncode == 2 and "--sim-time-scales" in r.stderr and "Traceback" not in r.stderr


def test_report_losses_record_each_scenario_with_lost_reports(tmp_path):
    from maxine.training import scenario as scenarios
    from maxine.training.models_cli import with_report_losses

    base = scenarios.by_name("homogeneous")
    clean, lossy = with_report_losses([base], [0.0, 0.1])
    assert clean is base and lossy["name"] == "homogeneous@loss0.1"
    assert lossy["info"]["report_loss"] == 0.1 and "report_loss" not in base["info"]
    assert scenarios.load(lossy)["info"]["report_loss"] == 0.1  # a valid scenario
    r = cli("train", "advanced-ml", "--data", str(tmp_path / "log"), "--from-sim", "homogeneous",
            "--sim-report-losses", "1", "--out", str(tmp_path))
    assert r.returncode == 2 and "--sim-report-losses" in r.stderr and "Traceback" not in r.stderr
